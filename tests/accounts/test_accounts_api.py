"""GET/DELETE /accounts: tenant isolation, status as of now, filters, pages."""

from __future__ import annotations

from datetime import timedelta

import httpx
import jwt
import pytest

from allegro_link.accounts.models import AccountStatus, ReloginReason
from allegro_link.db import utcnow
from allegro_link.settings import Settings
from tests.support.accounts import insert_account
from tests.support.factories import OWNER_JWT_SECRET, bearer, owner_token

A = bearer(owner_token("owner-a"))
B = bearer(owner_token("owner-b"))


class TestTenantIsolation:
    async def test_owner_lists_only_its_own_accounts(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        mine = await insert_account(settings, owner_id="owner-a")
        await insert_account(settings, owner_id="owner-b")
        body = (await client.get("/accounts", headers=A)).json()
        assert [item["id"] for item in body["items"]] == [str(mine.id)]

    @pytest.mark.parametrize("method", ["GET", "DELETE"])
    async def test_another_owners_account_is_404(
        self, client: httpx.AsyncClient, settings: Settings, method: str
    ) -> None:
        theirs = await insert_account(settings, owner_id="owner-b")
        response = await client.request(method, f"/accounts/{theirs.id}", headers=A)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        assert (await client.get(f"/accounts/{theirs.id}", headers=B)).status_code == 200

    async def test_owner_cannot_ask_for_another_owners_list(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/accounts?owner_id=owner-b", headers=A)
        assert response.status_code == 403


class TestStatus:
    async def test_expired_refresh_token_reads_relogin_required_at_its_expiry(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        expiry = utcnow() - timedelta(minutes=5)
        account = await insert_account(settings, refresh_expires_at=expiry)
        body = (await client.get(f"/accounts/{account.id}", headers=A)).json()
        assert body["status"] == "relogin_required"
        assert body["relogin_reason"] == "refresh_token_expired"
        assert body["status_changed_at"] == expiry.isoformat().replace("+00:00", "Z")

    async def test_filters_and_count_follow_the_effective_status(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        active = await insert_account(settings, login="Aktywne")
        await insert_account(settings, login="Wygasle", refresh_expires_at=utcnow() - timedelta(seconds=1))
        await insert_account(
            settings,
            login="Stare",
            allegro_user_id=None,
            status=AccountStatus.RELOGIN_REQUIRED,
            reason=ReloginReason.LEGACY_ACCOUNT,
            access_token=None,
            refresh_token=None,
        )
        relogin = (await client.get("/accounts?status=relogin_required", headers=A)).json()
        assert sorted(i["login"] for i in relogin["items"]) == ["Stare", "Wygasle"]
        only_active = (await client.get("/accounts?status=active", headers=A)).json()
        assert [i["id"] for i in only_active["items"]] == [str(active.id)]
        assert only_active["relogin_required_count"] == 2  # whatever the filter

    async def test_login_filter_ignores_case(self, client: httpx.AsyncClient, settings: Settings) -> None:
        await insert_account(settings, login="DuzeLitery")
        body = (await client.get("/accounts?login=duzelitery", headers=A)).json()
        assert [i["login"] for i in body["items"]] == ["DuzeLitery"]


class TestPagination:
    async def test_cursor_walks_every_account_once(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        ids = [str((await insert_account(settings, login=f"k{i}")).id) for i in range(5)]
        seen: list[str] = []
        cursor = None
        while True:
            query = "/accounts?limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = (await client.get(query, headers=A)).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids

    @pytest.mark.parametrize(
        "query", ["cursor=!!!", "limit=0", "limit=201", "status=bogus", "cursor=" + "a" * 65]
    )
    async def test_bad_parameters_are_4xx_problems(self, client: httpx.AsyncClient, query: str) -> None:
        response = await client.get(f"/accounts?{query}", headers=A)
        assert response.status_code in (400, 422)
        assert response.headers["content-type"] == "application/problem+json"

    async def test_non_uuid_id_is_422(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/accounts/not-a-uuid", headers=A)).status_code == 422


class TestDelete:
    async def test_delete_destroys_the_account(self, client: httpx.AsyncClient, settings: Settings) -> None:
        account = await insert_account(settings)
        assert (await client.delete(f"/accounts/{account.id}", headers=A)).status_code == 204
        assert (await client.get(f"/accounts/{account.id}", headers=A)).status_code == 404
        assert (await client.delete(f"/accounts/{account.id}", headers=A)).status_code == 404


class TestOwnerTokens:
    @pytest.mark.parametrize(
        "token",
        [
            jwt.encode({"sub": "owner-a", "exp": 9999999999}, "x" * 40, algorithm="HS256"),  # wrong key
            jwt.encode({"sub": "owner-a", "exp": 1}, OWNER_JWT_SECRET, algorithm="HS256"),  # expired
            jwt.encode({"sub": "owner-a"}, OWNER_JWT_SECRET, algorithm="HS256"),  # no exp
            jwt.encode({"exp": 9999999999}, OWNER_JWT_SECRET, algorithm="HS256"),  # no sub
            jwt.encode({"sub": "owner-a", "exp": 9999999999}, "", algorithm="none"),  # alg=none
            "not-a-jwt",
            "",
        ],
    )
    async def test_bad_owner_tokens_are_401(self, client: httpx.AsyncClient, token: str) -> None:
        response = await client.get("/accounts", headers=bearer(token))
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"

    async def test_no_credentials_is_401(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/accounts")).status_code == 401

    async def test_audience_and_issuer_are_checked_when_configured(self, settings: Settings) -> None:
        from allegro_link.app import create_app
        from tests.support.live import lifespan

        strict = settings.model_copy(
            update={"owner_jwt_issuer": "https://idp.example", "owner_jwt_audience": "al"}
        )
        async with lifespan(create_app(strict)) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as strict_client:
                good = owner_token("owner-a", iss="https://idp.example", aud="al")
                wrong_aud = owner_token("owner-a", iss="https://idp.example", aud="other")
                assert (await strict_client.get("/accounts", headers=bearer(good))).status_code == 200
                assert (await strict_client.get("/accounts", headers=bearer(wrong_aud))).status_code == 401
                assert (await strict_client.get("/accounts", headers=A)).status_code == 401
