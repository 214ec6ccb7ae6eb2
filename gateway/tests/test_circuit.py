"""The circuit breaker: opens after N consecutive failures, one probe after the cool-down."""

from __future__ import annotations

from gateway.circuit import CircuitBreaker, CircuitState


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_only():
    clock = FakeClock()
    breaker = CircuitBreaker(3, 10.0, clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # the run is broken: counting starts again
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED and breaker.allow()
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert not breaker.allow()
    assert breaker.retry_after() == 10.0


def test_half_open_lets_one_probe_through_and_its_result_decides():
    clock = FakeClock()
    breaker = CircuitBreaker(1, 5.0, clock)
    breaker.record_failure()
    clock.now += 5.0
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # a second caller while the probe is out
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN and breaker.retry_after() == 5.0
    clock.now += 5.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED and breaker.allow() and breaker.allow()


def test_a_probe_that_settles_nothing_frees_the_slot():
    clock = FakeClock()
    breaker = CircuitBreaker(1, 1.0, clock)
    breaker.record_failure()
    clock.now += 1.0
    assert breaker.allow()
    breaker.release()
    assert breaker.allow()
