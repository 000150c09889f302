"""The problems the token path answers with (their `code` and `title` are part of the API)."""

from __future__ import annotations

import math

from allegro_link.errors import Conflict, ServiceUnavailable


class ReloginRequired(Conflict):
    code = "relogin_required"
    title = "The account must be logged in again"


class AllegroUnavailableProblem(ServiceUnavailable):
    code = "allegro_unavailable"
    title = "Allegro is unavailable"

    def __init__(self, retry_after: float, detail: str | None = None) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(
            detail or "Allegro cannot issue a token right now and no valid token is held; retry later.",
            headers={"Retry-After": str(seconds)},
        )
