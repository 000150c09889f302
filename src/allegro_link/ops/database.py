"""Telling apart the ways a database can turn us away, for /readyz and the start-up line."""

from __future__ import annotations

from allegro_link.db import sqlstate

# SQLSTATEs PostgreSQL answers a connection attempt with when it is up but will not let us in. They are
# configuration mistakes, not outages: retrying does not help, a person must fix the URL or the role.
_REFUSALS = {
    # invalid_authorization_specification: unknown role, or pg_hba.conf has no entry for this client.
    "28000": "The database refused the login (unknown user, or this client is not allowed in).",
    # invalid_password
    "28P01": "The database refused the login (wrong password).",
    # invalid_catalog_name
    "3D000": "The database named in the connection URL does not exist.",
}
_HINT = " Check ALLEGRO_LINK_DATABASE_URL."


def describe_refusal(exc: BaseException) -> str | None:
    """A sentence for an operator when `exc` means the database refused us, else None."""
    refusal = _REFUSALS.get(sqlstate(exc) or "")
    return refusal + _HINT if refusal is not None else None
