"""The pure rules of webhooks: subscription patterns, the signature, the retry schedule and the
address filter of the sender's resolver."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from api.url_policy import webhook_url_problem
from api.webhooks.dispatcher import DeliveryPolicy, WebhookDispatcher
from api.webhooks.outbox import EVENT_PATTERNS, EVENT_TYPES, pattern_matches, subscribes_to
from api.webhooks.sender import PublicAddressResolver, WebhookSender, signature


@pytest.mark.parametrize(
    ("pattern", "event_type", "matches"),
    [
        ("*", "livestream.started", True),
        ("*", "restream.failed", True),
        ("livestream.*", "livestream.ended", True),
        ("livestream.*", "recording.ready", False),
        ("recording.*", "recording.failed", True),
        ("recording.ready", "recording.ready", True),
        ("recording.ready", "recording.failed", False),
        ("restream.*", "restreamx.failed", False),
        ("livestream", "livestream.started", False),
    ],
)
def test_patterns(pattern: str, event_type: str, matches: bool) -> None:
    assert pattern_matches(pattern, event_type) is matches


def test_every_type_has_a_family_and_every_pattern_matches_something() -> None:
    for pattern in EVENT_PATTERNS:
        assert any(pattern_matches(pattern, t) for t in EVENT_TYPES), pattern
    for event_type in EVENT_TYPES:
        assert f"{event_type.split('.')[0]}.*" in EVENT_PATTERNS
    assert subscribes_to(["recording.ready", "livestream.*"], "livestream.reconnected")
    assert not subscribes_to([], "livestream.started")


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"id":"x"}'
    expected = hmac.new(b"whsec_k", b"1700000000." + body, hashlib.sha256).hexdigest()

    assert signature("whsec_k", 1700000000, body) == f"t=1700000000,v1={expected}"


def test_backoff_doubles_up_to_the_cap_within_the_jitter() -> None:
    policy = DeliveryPolicy(backoff_base=5.0, backoff_cap=3600.0, jitter=0.2)
    dispatcher = WebhookDispatcher(
        None,  # type: ignore[arg-type]  # the schedule needs no database
        sender=WebhookSender(timeout=1.0, allow_private=False),
        policy=policy,
    )
    for attempts, nominal in [(1, 5.0), (2, 10.0), (3, 20.0), (10, 2560.0)]:
        delays = [dispatcher.backoff(attempts) for _ in range(200)]
        assert nominal * 0.8 <= min(delays) and max(delays) <= nominal * 1.2
        assert max(delays) - min(delays) > nominal * 0.1  # jittered
    assert {dispatcher.backoff(n) for n in (11, 12, 10_000) for _ in range(50)} == {3600.0}


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://hooks.example.com/x?y=1", None),
        ("http://93.184.216.34:8080/", None),
        ("rtmp://hooks.example.com/x", "url must start with http:// or https://"),
        ("http://127.0.0.1/", "private"),
        ("https://user:pw@[fe80::1]/", "private"),
    ],
)
def test_webhook_urls(url: str, problem: str | None) -> None:
    found = webhook_url_problem(url, allow_private=False)
    assert (found is None) if problem is None else (found is not None and problem in found)
    assert webhook_url_problem(url.replace("rtmp", "http"), allow_private=True) is None


async def test_the_resolver_refuses_names_of_private_addresses() -> None:
    resolver = PublicAddressResolver()
    try:
        with pytest.raises(OSError, match="localhost resolves only to loopback"):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()
