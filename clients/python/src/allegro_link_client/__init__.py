"""Valid Allegro access tokens from allegro-link, for internal services.

link = AllegroLink("https://allegro-link.internal", api_key="alk_…", deadline=10.0)
with httpx.Client(base_url="https://api.allegro.pl", auth=link.auth(account_id)) as allegro: ...
"""

from allegro_link_client._async import AsyncAllegroLink, AsyncEventFeed
from allegro_link_client._auth import AllegroAuth
from allegro_link_client._errors import (
    AccountNotFound,
    AllegroLinkError,
    AllegroLinkUnavailable,
    ReloginRequired,
    RequestNotReplayable,
)
from allegro_link_client._models import Account, Event, EventAccount, Token
from allegro_link_client._sync import AllegroLink, EventFeed

__all__ = [
    "Account",
    "AccountNotFound",
    "AllegroAuth",
    "AllegroLink",
    "AllegroLinkError",
    "AllegroLinkUnavailable",
    "AsyncAllegroLink",
    "AsyncEventFeed",
    "Event",
    "EventAccount",
    "EventFeed",
    "ReloginRequired",
    "RequestNotReplayable",
    "Token",
]
