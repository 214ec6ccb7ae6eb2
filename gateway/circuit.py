"""A circuit breaker per upstream: stop sending to a service that keeps failing, probe it after a pause.

closed → (N consecutive failures) → open → (cool-down elapsed) → half-open: one probe goes through;
its success closes the circuit, its failure opens it again for another cool-down. While open,
callers get a 503 at once instead of waiting out a timeout per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum


class CircuitState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, failure_threshold: int, cooldown_seconds: float,
                 clock: Callable[[], float] = time.monotonic):
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() - self._opened_at >= self.cooldown_seconds:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    def retry_after(self) -> float:
        """Seconds until a probe may be tried (0 when the circuit lets calls through)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.cooldown_seconds - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """May a call go out now? In half-open, only one probe at a time does."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._probe_in_flight = False
        if self._opened_at is not None:
            # A failed probe (or a call that started before the circuit opened): a new cool-down.
            self._opened_at = self._clock()
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._opened_at = self._clock()

    def release(self) -> None:
        """A call that neither proved nor disproved the upstream (e.g. the client went away)."""
        self._probe_in_flight = False
