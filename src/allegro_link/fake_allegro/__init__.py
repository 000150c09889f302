"""A faithful emulator of Allegro's OAuth server and `GET /me`, for development, demos and tests.

It follows the behaviour described in docs/allegro.md: the HTML login/consent page, exact
redirect URI matching, 10-second single-use codes, PKCE S256 only, Basic client auth, form-body-only
token parameters, refresh-token rotation with a 60-second reuse grace, the 20-session cap, and
Allegro's error bodies and media types. Test controls live in `controls.py`.

Where Allegro's behaviour is not documented, the fake picks the stricter reading, so that a client
that works against the fake also works against Allegro:

- a replayed code gets `invalid_grant` and also kills the tokens minted from it (RFC 6749, 4.1.2);
- any presentation of a code burns it, even one that fails (wrong verifier, wrong redirect URI);
- a refresh kills the session's live access token, also a refresh made in the grace window with the
  previous refresh token; a refresh token that was never used stays valid until it expires;
- going over 20 active access tokens ends the oldest session, its refresh token included;
- "Anuluj" redirects with `error=access_denied&error_description=User denied access` and the state.
"""

from allegro_link.fake_allegro.app import FakeAllegroApp, create_fake_allegro_app
from allegro_link.fake_allegro.config import ALL_SCOPES, FakeAllegroConfig, FakeClient

__all__ = ["ALL_SCOPES", "FakeAllegroApp", "FakeAllegroConfig", "FakeClient", "create_fake_allegro_app"]
