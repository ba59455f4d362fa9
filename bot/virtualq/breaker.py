"""A circuit breaker: an outage answered at once instead of one timeout per customer."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from ..errors import UpstreamRefused, UpstreamUnavailable

log = logging.getLogger("checkin_bot.virtualq")


class CircuitBreaker:
    """After `threshold` calls in a row that found VirtualQ unavailable, stop calling it for
    `seconds`: each call fails at once, so an outage does not make every customer wait for a
    timeout. Then one trial call goes through: an answer (a ticket or a refusal) closes the
    circuit, another failure opens it again. One per process; `threshold` 0 turns it off."""

    def __init__(
        self, threshold: int, seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.seconds = seconds
        self.clock = clock
        self.failures = 0
        self.open_until = 0.0
        self.trial = False

    def blocked(self) -> str | None:
        """Why this call must not be made now (None: make it)."""
        if not self.threshold or self.failures < self.threshold:
            return None
        wait = self.open_until - self.clock()
        if wait > 0:
            return (
                f"circuit open: {self.failures} failures in a row; "
                f"VirtualQ is tried again in {wait:.0f}s"
            )
        if self.trial:
            return "circuit half-open: a trial call to VirtualQ is under way"
        self.trial = True
        return None

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Count the call inside: a refusal or a case is an answer, unavailability a failure."""
        try:
            yield
        except UpstreamRefused:
            self.answered()
            raise
        except UpstreamUnavailable:
            self.failed()
            raise
        self.answered()

    def answered(self) -> None:
        if self.threshold and self.failures >= self.threshold:
            log.warning("VirtualQ answers again: circuit closed")
        self.failures = 0
        self.trial = False

    def failed(self) -> None:
        self.failures += 1
        self.trial = False
        if self.threshold and self.failures >= self.threshold:
            self.open_until = self.clock() + self.seconds
            log.error(
                "VirtualQ failed %d times in a row: answering at once for %gs (circuit open)",
                self.failures,
                self.seconds,
            )
