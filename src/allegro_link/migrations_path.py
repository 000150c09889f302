"""Where the Alembic scripts live, for `allegro-link migrate`, `/readyz` and the tests."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

_PACKAGED = Path(__file__).parent / "migrations"  # inside a built wheel (see pyproject force-include)
_SOURCE_TREE = Path(__file__).resolve().parents[2] / "migrations"  # editable install / checkout


def migrations_dir() -> Path:
    for candidate in (_PACKAGED, _SOURCE_TREE):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("Alembic migrations not found next to the package or in the source tree")


def alembic_config(database_url: str | None = None, *, pgbouncer: bool | None = None) -> Config:
    """pgbouncer None: the Alembic environment reads ALLEGRO_LINK_DB_PGBOUNCER itself."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["configure_logging"] = False
    if database_url is not None:
        config.attributes["database_url"] = database_url
    if pgbouncer is not None:
        config.attributes["db_pgbouncer"] = pgbouncer
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no Alembic revisions found")
    return head
