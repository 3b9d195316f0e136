"""The slot rules of webhook delivery: which due deliveries go out next given what is in flight,
and the circuit breaker of a failing webhook, on a fake clock."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from api.webhooks.dispatcher import DeliveryPolicy
from api.webhooks.fairness import Breakers, Candidate, CircuitBreaker, pick

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def due(account: str, webhooks: int, per_webhook: int = 1) -> list[Candidate]:
    """``per_webhook`` due deliveries for each of ``webhooks`` webhooks of ``account``."""
    return [
        Candidate(f"{account}{w}-{n}", f"{account}{w}", account)
        for n in range(per_webhook)
        for w in range(webhooks)
    ]


def test_one_account_with_many_due_gets_its_share_not_every_slot() -> None:
    chosen = pick(due("a", 20, 6), 16, in_flight=[], per_webhook=2, per_account=8)

    assert len(chosen) == 8
    assert len({c.webhook_id for c in chosen}) == 8  # oldest first: one event, 8 webhooks


def test_an_account_due_after_a_big_backlog_is_served_in_the_same_round() -> None:
    backlog, late = due("a", 20, 6), due("b", 1)

    chosen = pick(backlog + late, 4, in_flight=[], per_webhook=2, per_account=8)

    assert [c.account_id for c in chosen] == ["a", "b", "a", "a"]  # turns: a, b, then a alone


def test_the_account_with_fewest_in_flight_goes_first() -> None:
    busy = due("a", 8)
    candidates = due("a", 20, 2)[8:] + due("c", 1) + due("b", 1)

    one = pick(candidates, 1, in_flight=busy, per_webhook=2, per_account=15)
    two = pick(candidates, 3, in_flight=busy + due("c", 1), per_webhook=2, per_account=15)

    assert [c.account_id for c in one] == ["c"]  # c and b have none in flight: c is older
    assert [c.account_id for c in two] == ["b", "c", "a"]  # b (0), then c (1) before a (8)


def test_a_webhook_never_has_more_than_its_limit_in_flight() -> None:
    hook = due("a", 1, 10)  # ten due for one webhook
    in_flight = hook[:1]

    assert len(pick(hook[1:], 16, in_flight=[], per_webhook=2, per_account=8)) == 2
    assert len(pick(hook[1:], 16, in_flight=in_flight, per_webhook=2, per_account=8)) == 1
    assert pick(hook[1:], 16, in_flight=hook[:2], per_webhook=2, per_account=8) == []


def test_breaker_limits_override_the_per_webhook_limit() -> None:
    candidates = due("a", 3, 3)
    limits = {"a0": 0, "a1": 1}  # a0 open, a1 ready for its probe

    chosen = pick(candidates, 16, in_flight=[], per_webhook=2, per_account=8, webhook_limits=limits)

    assert Counter(c.webhook_id for c in chosen) == {"a1": 1, "a2": 2}


def test_nothing_is_picked_without_a_free_slot_or_with_the_account_at_its_share() -> None:
    assert pick(due("a", 3), 0, in_flight=[], per_webhook=2, per_account=8) == []
    full = due("a", 8)
    assert pick(due("a", 20)[8:], 8, in_flight=full, per_webhook=2, per_account=8) == []


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4)), max_size=40),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4)), max_size=16),
    st.integers(0, 16),
    st.integers(1, 3),
    st.integers(1, 8),
)
def test_pick_keeps_every_bound_and_leaves_no_slot_idle_it_could_fill(
    due_pairs: list[tuple[int, int]],
    flying_pairs: list[tuple[int, int]],
    free: int,
    per_webhook: int,
    per_account: int,
) -> None:
    def candidate(n: int, pair: tuple[int, int], kind: str) -> Candidate:
        account, hook = pair
        return Candidate(f"{kind}{n}", f"w{account}.{hook}", f"a{account}")

    candidates = [candidate(n, p, "d") for n, p in enumerate(due_pairs)]
    flying = [candidate(n, p, "f") for n, p in enumerate(flying_pairs)]

    chosen = pick(
        candidates, free, in_flight=flying, per_webhook=per_webhook, per_account=per_account
    )

    assert len(chosen) <= free and len(set(chosen)) == len(chosen)
    assert set(chosen) <= set(candidates)
    total = flying + chosen
    by_hook, by_account = Counter(c.webhook_id for c in total), Counter(c.account_id for c in total)
    for c in chosen:
        assert by_hook[c.webhook_id] <= max(
            per_webhook, Counter(f.webhook_id for f in flying)[c.webhook_id]
        )
        assert by_account[c.account_id] <= max(
            per_account, Counter(f.account_id for f in flying)[c.account_id]
        )
    if len(chosen) < free:  # every candidate left behind is held by a bound
        for c in set(candidates) - set(chosen):
            assert by_hook[c.webhook_id] >= per_webhook or by_account[c.account_id] >= per_account


def test_the_breaker_opens_after_threshold_failures_and_sends_one_probe() -> None:
    breaker = CircuitBreaker(threshold=3)
    for n in range(2):
        breaker.failed(T0 + timedelta(seconds=n), delay=60.0)
        assert breaker.limit(T0 + timedelta(seconds=n), per_webhook=2) == 2  # still closed

    breaker.failed(T0 + timedelta(seconds=2), delay=60.0)
    probe_at = T0 + timedelta(seconds=62)

    assert breaker.tripped and breaker.probe_at == probe_at
    assert breaker.limit(probe_at - timedelta(seconds=1), per_webhook=2) == 0
    assert breaker.waiting_until(probe_at - timedelta(seconds=1)) == probe_at
    assert breaker.limit(probe_at, per_webhook=2) == 1 and breaker.waiting_until(probe_at) is None
    breaker.sent()
    assert breaker.probing and breaker.limit(probe_at, per_webhook=2) == 0  # one probe at once


def test_a_failed_probe_reopens_the_breaker_and_a_delivered_one_closes_it() -> None:
    breaker = CircuitBreaker(threshold=1)
    breaker.failed(T0, delay=10.0)
    breaker.sent()

    breaker.failed(T0 + timedelta(seconds=10), delay=20.0)

    assert not breaker.probing and breaker.failures == 2
    assert breaker.waiting_until(T0 + timedelta(seconds=29)) == T0 + timedelta(seconds=30)
    breaker.sent()
    breaker.succeeded()
    assert not breaker.tripped and breaker.limit(T0 + timedelta(seconds=30), per_webhook=2) == 2


def test_a_probe_that_ended_without_an_outcome_frees_the_probe() -> None:
    breaker = CircuitBreaker(threshold=1)
    breaker.failed(T0, delay=0.0)
    breaker.sent()

    breaker.ended()

    assert breaker.limit(T0, per_webhook=2) == 1


def test_breakers_report_only_tripped_webhooks_and_forget_stale_ones() -> None:
    breakers = Breakers(threshold=2)
    breakers.failed("once", T0, 30.0)
    breakers.failed("dead", T0, 30.0)
    breakers.failed("dead", T0, 30.0)
    hooks = ["once", "dead", "fine"]

    assert breakers.limits(hooks, T0, per_webhook=2) == {"dead": 0}
    assert breakers.waiting(hooks, T0) == {"dead": T0 + timedelta(seconds=30)}
    breakers.succeeded("once")
    assert breakers.get("once") is None and len(breakers) == 1
    breakers.sent("dead")
    breakers.prune(T0 + timedelta(days=2))
    assert len(breakers) == 1  # its probe is in flight
    breakers.ended("dead")
    breakers.prune(T0 + timedelta(days=2))
    assert len(breakers) == 0


def test_an_account_always_leaves_a_slot_to_the_others() -> None:
    assert DeliveryPolicy().account_slots == 8
    assert DeliveryPolicy(concurrency=4, per_account=8).account_slots == 3
    assert DeliveryPolicy(concurrency=1).account_slots == 1
