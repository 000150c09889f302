"""The return_to allowlist refuses every open-redirect trick."""

from __future__ import annotations

import pytest

from allegro_link.oauth.return_to import InvalidReturnTo, ReturnToPolicy, with_query

POLICY = ReturnToPolicy(["https://panel.example.com/allegro/", "http://localhost:3000/"])


class TestReturnTo:
    @pytest.mark.parametrize(
        "url",
        [
            "https://panel.example.com/allegro/",
            "https://panel.example.com/allegro/konta?tab=1",
            "https://PANEL.example.com/allegro/x",
            "https://panel.example.com:443/allegro/x",
            "HTTPS://panel.example.com/allegro/x#frag",
            "http://localhost:3000/anything",
        ],
    )
    def test_allowed(self, url: str) -> None:
        assert POLICY.check(url) == url

    @pytest.mark.parametrize(
        "url",
        [
            "//evil.example/allegro/",
            "https://evil.example/allegro/",
            "https://panel.example.com@evil.example/allegro/",
            "https://panel.example.com.evil.example/allegro/",
            "https://evil.example\\@panel.example.com/allegro/",
            "https://panel.example.com\\evil.example/allegro/",
            "https://panel.example.com/allegro/%2f%2fevil.example",
            "https://panel.example.com/allegro/../admin",
            "https://panel.example.com/allegro/%2e%2e/admin",
            "https://panel.example.com/other/",
            "https://panel.example.com/allegroX/",
            "https://panel.example.com:8443/allegro/",
            "http://panel.example.com/allegro/",
            "http://localhost:3001/",
            "javascript:alert(1)//panel.example.com/allegro/",
            "https://panel.example.com/allegro/\x00",
            "https://panel.example.com/allegro/\nx",
            "/allegro/relative",
            "https://panel.example.com/allegro/" + "a" * 3000,
            # percent-encoding and backslash variants
            "https://panel.example.com%2f@evil.example/allegro/",
            "https:/\\evil.example/allegro/",
            "/\\evil.example/allegro/",
            "https://panel.example.com/allegro/%5c%5cevil.example",
            "https://panel.example.com/allegro/..%2fadmin",
            "https://panel.example.com/allegro/%2E%2E/admin",
            # scheme tricks
            "https:evil.example/allegro/",
            "https:///evil.example/allegro/",
            "ht\ttps://panel.example.com/allegro/",
            "data:text/html,panel.example.com/allegro/",
            # host tricks: look-alikes, NFKC characters urlsplit refuses, fragments and queries before
            # the path, user information hidden behind a port
            "https://p\u0430nel.example.com/allegro/",
            "https://panel\u3002example\u3002com/allegro/",
            "https://panel.example.com\uff0fallegro/",
            "https://panel.example.com\ufe6bevil.example/allegro/",
            "https://[panel.example.com/allegro/",
            "https://panel.example.com#@evil.example/allegro/",
            "https://evil.example?https://panel.example.com/allegro/",
            "https://panel.example.com:443@evil.example/allegro/",
            "http://localhost:3000.evil.example/",
            "http://127.0.0.1:3000/",
            # case and port tricks
            "https://panel.example.com/ALLEGRO/",
            "https://panel.example.com/allegro",
            "https://panel.example.com:80/allegro/",
            "https://panel.example.com:99999/allegro/",
            "https://panel.example.com:-1/allegro/",
        ],
    )
    def test_refused(self, url: str) -> None:
        with pytest.raises(InvalidReturnTo):
            POLICY.check(url)

    @pytest.mark.parametrize(
        "url",
        [
            "https://panel.example.com/allegro/?allegro_link=error&error=access_denied",
            "https://panel.example.com/allegro/?link_session=planted",
            "https://panel.example.com/allegro/?tab=1&error=",
            "https://panel.example.com/allegro/?error",
            "https://panel.example.com/allegro/?ALLEGRO_LINK=error",
            "https://panel.example.com/allegro/?Error=access_denied",
            "https://panel.example.com/allegro/?%61llegro_link=error",
            "https://panel.example.com/allegro/?%6C%69%6E%6B_session=x",
            "https://panel.example.com/allegro/?%2561llegro_link=error",
            "https://panel.example.com/allegro/?%252561llegro_link=error",
            "https://panel.example.com/allegro/?allegro%5flink=error",
            "https://panel.example.com/allegro/?allegro.link=error",
            "https://panel.example.com/allegro/?allegro+link=error",
            "https://panel.example.com/allegro/?error[]=access_denied",
            "https://panel.example.com/allegro/?error%5B0%5D=access_denied",
            "https://panel.example.com/allegro/?tab=1&tab=2&error=x&error=y",
            "https://panel.example.com/allegro/?x=1&&link_session=a",
            # hash routers read their query from the fragment
            "https://panel.example.com/allegro/#/konta?allegro_link=error&error=access_denied",
            "https://panel.example.com/allegro/#error=access_denied",
            "https://panel.example.com/allegro/?tab=1#x?%6Cink_session=a",
        ],
    )
    def test_callback_parameters_already_present_are_refused(self, url: str) -> None:
        with pytest.raises(InvalidReturnTo, match="parameters the callback adds"):
            POLICY.check(url)

    @pytest.mark.parametrize(
        "url",
        [
            "https://panel.example.com/allegro/?errors=1&allegro_linked=1&session=2",
            "https://panel.example.com/allegro/?tab=error&view=allegro_link",
            "https://panel.example.com/allegro/#errors",
            "https://panel.example.com/allegro/#/konta?tab=link_session",
        ],
    )
    def test_similar_names_and_values_are_allowed(self, url: str) -> None:
        assert POLICY.check(url) == url

    def test_with_query_keeps_existing_parameters_and_fragment(self) -> None:
        assert (
            with_query("https://p.example/a/?x=1#top", {"allegro_link": "complete"})
            == "https://p.example/a/?x=1&allegro_link=complete#top"
        )
