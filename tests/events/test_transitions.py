"""What each account change records, through the real flows (fake Allegro over HTTP)."""

from __future__ import annotations

from typing import Any

from tests.support.factories import bearer, owner_token
from tests.support.link import LinkHarness


async def _history(harness: LinkHarness, account_id: str) -> list[dict[str, Any]]:
    response = await harness.service.get(
        f"/accounts/{account_id}/events", headers=bearer(owner_token("owner-a"))
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


class TestFlowsRecordTheirEvents:
    async def test_link_relink_and_mismatch(self, harness: LinkHarness) -> None:
        account = (await harness.link("owner-a", "Sprzedawca1")).json()["account"]
        revoked = await harness.fake.post("/__fake__/users/Sprzedawca1/revoke")
        assert revoked.status_code < 300
        relinked = await harness.link("owner-a", "Sprzedawca1", account_id=account["id"])
        assert relinked.json()["result"] == "relinked"
        mismatch = await harness.link("owner-a", "InnySprzedawca", account_id=account["id"])
        assert mismatch.status_code == 409

        newest_first = await _history(harness, account["id"])
        assert [(e["type"], e["data"]) for e in newest_first] == [
            ("account.relink_mismatch", {"expected_login": "Sprzedawca1", "actual_login": "InnySprzedawca"}),
            ("account.relinked", {"previous_status": "active", "previous_reason": None}),
            ("account.linked", {}),
        ]
        assert newest_first[0]["account"]["status"] == "active"  # a mismatch changes nothing

    async def test_delete_is_the_last_event_and_the_owner_then_reads_404(self, harness: LinkHarness) -> None:
        account = (await harness.link("owner-a", "Sprzedawca1")).json()["account"]
        owner = bearer(owner_token("owner-a"))
        assert (await harness.service.delete(f"/accounts/{account['id']}", headers=owner)).status_code == 204
        assert (
            await harness.service.get(f"/accounts/{account['id']}/events", headers=owner)
        ).status_code == 404
