"""Token buckets: burst, refill, the wait a refused client is told, and bounded memory."""

from __future__ import annotations

import pytest

from gateway.limits import TokenBuckets, rate_limited


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate():
    clock = FakeClock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0.0  # another client has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    clock.now += 100
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # never more than the burst
    assert buckets.take("a") > 0


def test_retry_after_is_whole_seconds_at_least_one():
    assert rate_limited(0.01, "x").headers["Retry-After"] == "1"
    assert rate_limited(2.2, "x").headers["Retry-After"] == "3"
    assert rate_limited(2.2, "x").status_code == 429


def test_only_the_most_recent_clients_are_remembered():
    clock = FakeClock()
    buckets = TokenBuckets(rate=1.0, burst=1, max_clients=100, clock=clock)
    buckets.take("old")
    for i in range(100):
        buckets.take(f"c{i}")
    assert buckets.take("old") == 0.0  # forgotten, so it starts full again
    assert len(buckets._buckets) == 100
