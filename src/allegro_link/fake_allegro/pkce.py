"""PKCE as Allegro enforces it: S256 only, verifier 43 to 128 unreserved characters (RFC 7636)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

_VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
# base64url of a SHA-256 digest, without padding, is always 43 characters.
_CHALLENGE_RE = re.compile(r"^[A-Za-z0-9\-_]{43}$")


def s256_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def is_valid_challenge(challenge: str) -> bool:
    return _CHALLENGE_RE.match(challenge) is not None


def verifier_matches(verifier: str | None, challenge: str) -> bool:
    if verifier is None or _VERIFIER_RE.match(verifier) is None:
        return False
    return hmac.compare_digest(s256_challenge(verifier), challenge)
