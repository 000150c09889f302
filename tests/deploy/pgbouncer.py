"""A real PgBouncer (Debian's /usr/sbin/pgbouncer), transaction pooling, in front of the test PostgreSQL."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.support.live import free_port

PGBOUNCER = Path("/usr/sbin/pgbouncer")
# Few server connections for many clients, so that consecutive transactions of one client land on
# different server connections, and server connections pass from client to client.
SERVER_POOL_SIZE = 3


def _config(listen_port: int, server_host: str, server_port: int, directory: Path) -> str:
    return f"""\
[databases]
* = host={server_host} port={server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {directory / "userlist.txt"}
pool_mode = transaction
default_pool_size = {SERVER_POOL_SIZE}
max_client_conn = 500
server_reset_query =
server_check_delay = 0
ignore_startup_parameters = extra_float_digits
admin_users = postgres
logfile = {directory / "pgbouncer.log"}
"""


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited: {log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("pgbouncer did not start listening")


@contextmanager
def running_pgbouncer(server_url: str) -> Iterator[int]:
    """Start PgBouncer in front of the server of `server_url`; yields the port it listens on."""
    url = make_url(server_url)
    # An embedded server (no server at ALLEGRO_LINK_TEST_DATABASE_URL) listens only on a Unix socket,
    # in a directory only its own system user may enter: PgBouncer reaches it there, as that user.
    socket_dir = url.query.get("host")
    server_host = socket_dir if isinstance(socket_dir, str) else (url.host or "127.0.0.1")
    run_as = pwd.getpwuid(os.stat(socket_dir).st_uid).pw_name if isinstance(socket_dir, str) else "postgres"
    directory = Path(tempfile.mkdtemp(prefix="allegro-link-pgbouncer-"))
    port = free_port()
    (directory / "userlist.txt").write_text(f'"{url.username or "postgres"}" ""\n')
    (directory / "pgbouncer.ini").write_text(_config(port, server_host, url.port or 5432, directory))
    command = [str(PGBOUNCER), "--quiet"]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root (CI runs as root); it drops to that user itself.
        directory.chmod(0o777)
        command += ["--user", run_as]
    process = subprocess.Popen([*command, str(directory / "pgbouncer.ini")])  # noqa: S603 - our fixed command
    try:
        _wait_listening(port, process, directory / "pgbouncer.log")
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)
