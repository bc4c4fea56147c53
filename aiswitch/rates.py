"""Rate limits as users write them (`rate: 30/min` in agents.yaml or a preset).

A small module below everything that uses it: agent definitions check a rate when they are
loaded, the scheduler keeps one bucket per agent or lane. The clock is the caller's, so the
bucket is a pure object its tests drive with numbers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RateLimit:
    """A token bucket: `count` starts per `per_s` seconds, bursts up to `count`."""

    count: int
    per_s: float
    tokens: float = -1.0
    stamp: float = 0.0

    def _refill(self, now: float) -> None:
        if self.tokens < 0:
            self.tokens, self.stamp = float(self.count), now
            return
        rate = self.count / self.per_s
        self.tokens = min(float(self.count), self.tokens + (now - self.stamp) * rate)
        self.stamp = now

    def available(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= 1.0

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0

    def wait_s(self, now: float) -> float:
        self._refill(now)
        return max(0.0, (1.0 - self.tokens) * self.per_s / self.count)


def parse_rate(text: str) -> RateLimit:
    """`30/min`, `5/s`, `100/hour` → a RateLimit (ValueError with the accepted forms)."""
    count, sep, unit = text.strip().partition("/")
    seconds = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0}
    seconds.update({"h": 3600.0, "hour": 3600.0})
    if not sep or not count.strip().isdigit() or int(count) < 1 or unit.strip() not in seconds:
        raise ValueError(f"invalid rate {text!r}: write COUNT/s, COUNT/min or COUNT/hour")
    return RateLimit(int(count), seconds[unit.strip()])
