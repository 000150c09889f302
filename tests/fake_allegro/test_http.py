"""The fake over real HTTP: uvicorn on 127.0.0.1, as `make dev` and end-to-end tests use it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.fake_allegro.conftest import MakeApp
from tests.fake_allegro.helpers import (
    AUTHORIZE_PATH,
    REDIRECT_URI,
    TOKEN_PATH,
    authorize_params,
    basic,
    exchange,
    get_code,
    hidden_query,
    me,
    new_pkce,
    redirect_params,
    refresh,
    tokens_for,
)
from tests.support.live import START_TIMEOUT, free_port

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def base_url(make_app: MakeApp) -> Iterator[str]:
    """The fake served by uvicorn in a background thread, on a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(make_app(), log_level="critical", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


async def test_a_browser_links_an_account_over_http(base_url: str) -> None:
    pkce = new_pkce()
    async with httpx.AsyncClient(base_url=base_url) as http:
        page = await http.get(AUTHORIZE_PATH, params=authorize_params(pkce, state="over-http"))
        logged_in = await http.post(
            AUTHORIZE_PATH,
            data={"oauth_query": hidden_query(page.text), "login": "web-seller", "action": "login"},
        )
        consent = await http.get(logged_in.headers["location"])
        done = await http.post(
            AUTHORIZE_PATH, data={"oauth_query": hidden_query(consent.text), "action": "consent"}
        )
        params = redirect_params(done)
        tokens = (await exchange(http, params["code"], pkce)).json()
        renewed = (await refresh(http, tokens["refresh_token"])).json()
        profile = await me(http, renewed["access_token"])

    assert params["state"] == "over-http"
    assert done.headers["location"].startswith(REDIRECT_URI)
    assert profile.status_code == 200
    assert profile.json()["login"] == "web-seller"


async def test_a_reset_fault_closes_the_connection_without_an_answer(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        code = await get_code(http)
        await http.post("/__fake__/faults", json={"endpoint": "token", "kind": "reset"})

        with pytest.raises(httpx.RemoteProtocolError):
            await exchange(http, code)

        assert (await exchange(http, await get_code(http))).status_code == 200


async def test_a_timed_out_refresh_is_still_processed(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        tokens = await tokens_for(http)
        await http.post(
            "/__fake__/faults", json={"endpoint": "token", "kind": "timeout", "delay_seconds": 0.4}
        )

        form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}

        with pytest.raises(httpx.ReadTimeout):
            await http.post(TOKEN_PATH, data=form, headers=basic(), timeout=0.1)
        await asyncio.sleep(0.5)

        # The lost answer rotated the pair: the access token the client holds is dead.
        assert (await me(http, tokens["access_token"])).status_code == 401


def test_serve_runs_the_fake_configured_from_the_environment() -> None:
    port = free_port()
    env = os.environ | {
        "PYTHONPATH": str(SRC),
        "ALLEGRO_LINK_FAKE_CLIENT_ID": "env-client",
        "ALLEGRO_LINK_FAKE_CLIENT_SECRET": "env-secret",
    }
    script = (
        "from allegro_link.fake_allegro import FakeAllegroConfig\n"
        "from allegro_link.fake_allegro.server import serve\n"
        f"serve('127.0.0.1', {port}, FakeAllegroConfig.from_env())\n"
    )
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            deadline = time.monotonic() + START_TIMEOUT  # a fresh interpreter: slow on a loaded machine
            while True:
                try:
                    no_grant = http.post(TOKEN_PATH, data={}, headers=basic("env-client", "env-secret"))
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline, "the fake did not start"
                    time.sleep(0.05)
            wrong_client = http.post(TOKEN_PATH, data={}, headers=basic())
            controls = http.get("/__fake__/stats")
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert no_grant.status_code == 400  # authenticated, then refused for the missing grant_type
    assert wrong_client.status_code == 401
    assert controls.status_code == 404
