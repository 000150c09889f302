"""Ops endpoints and the behaviour every route shares: problem+json, request ids, input guards."""

from __future__ import annotations

import httpx

PROBLEM = "application/problem+json"


class TestHealth:
    async def test_healthz(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    async def test_readyz_when_migrated(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["status"] == "ready"


class TestMetrics:
    async def test_counts_requests_by_route_template_and_status(self, client: httpx.AsyncClient) -> None:
        await client.get("/healthz")
        await client.get("/no/such/path/123")
        body = (await client.get("/metrics")).text
        assert 'allegro_link_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in body
        assert 'route="unmatched",status="404"' in body
        assert "/no/such/path/123" not in body
        assert (
            'allegro_link_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/healthz"}'
            in body
        )


class TestProblems:
    async def test_unknown_path_is_problem_json(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/nope")
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
        assert response.json() == {
            "type": "urn:allegro-link:problem:not_found",
            "title": "Not found",
            "status": 404,
            "detail": "Not found",
            "code": "not_found",
        }

    async def test_wrong_method_is_problem_json(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/healthz")
        assert response.status_code == 405
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == "method_not_allowed"

    async def test_nul_byte_in_query_is_400(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz?x=%00")
        assert response.status_code == 400
        assert response.headers["content-type"] == PROBLEM

    async def test_oversized_body_is_413(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/healthz", content=b"x" * (65 * 1024))
        assert response.status_code == 413
        assert response.json()["code"] == "payload_too_large"


class TestRequestId:
    async def test_generated_when_absent(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz")
        assert len(response.headers["x-request-id"]) == 32

    async def test_echoed_when_sane(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        assert response.headers["x-request-id"] == "abc-123"

    async def test_replaced_when_not_sane(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz", headers={"X-Request-ID": "a b\tc" * 30})
        assert response.headers["x-request-id"] != "a b\tc" * 30
