"""The one origin check both clients share: what counts as the configured origin, and the
refusal of a next link that leaves it."""

from __future__ import annotations

import pytest

from bridge.errors import RejectedError
from bridge.http.origin import Origin, SameOrigin
from bridge.redact import redact_url

CONFIGURED = "https://api.example.test"
PAGE = f"{CONFIGURED}/api/v2/things?page%5Bafter%5D=a"


def test_an_origin_is_scheme_host_and_port_with_the_default_port_filled_in() -> None:
    assert Origin.of("https://API.Example.test/x?y=1") == Origin("https", "api.example.test", 443)
    assert Origin.of("http://api.example.test:8080") == Origin("http", "api.example.test", 8080)
    assert str(Origin.of(CONFIGURED)) == "https://api.example.test:443"


@pytest.mark.parametrize("url", [
    "https://api.example.test/api/v2/things?page%5Bafter%5D=b",
    "https://API.EXAMPLE.TEST:443/api/v2/things",
    "HTTPS://api.example.test/",
])
def test_the_configured_origin_spelled_differently_holds(url: str) -> None:
    origin = SameOrigin(CONFIGURED + "/", api="test", setting="TEST_URL")
    assert origin.holds(url)
    origin.check_next(PAGE, url)  # does not raise


@pytest.mark.parametrize("url", [
    "https://api.example-staging.test/api/v2/things",
    "http://api.example.test/api/v2/things",
    "https://api.example.test:8443/api/v2/things",
    "https://api.example.test.evil.test/api/v2/things",
    "https://api.example.test@evil.test/api/v2/things",
    "https://api.example.test:notaport/x",
    "/api/v2/things",
])
def test_another_origin_does_not_hold(url: str) -> None:
    assert not SameOrigin(CONFIGURED, api="test", setting="TEST_URL").holds(url)


def test_a_next_link_to_another_host_is_refused_clearly_and_without_secrets() -> None:
    origin = SameOrigin(CONFIGURED, api="test", setting="TEST_URL")
    foreign = "https://evil.test/collect?access_token=SECRET-TOKEN&page=2"

    with pytest.raises(RejectedError) as caught:
        origin.check_next(PAGE, foreign)

    err = caught.value
    message = str(err)
    assert message.startswith(f"test GET {redact_url(PAGE)}: next page link points to another origin")
    assert "https://evil.test/collect" in message
    assert "outside the configured API origin https://api.example.test:443" in message
    assert "refusing to send the credentials there" in message and "TEST_URL" in message
    assert "SECRET-TOKEN" not in message and "SECRET-TOKEN" not in err.detail
    assert (err.api, err.method, err.status) == ("test", "GET", None)
