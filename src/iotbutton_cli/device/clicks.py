"""Presses of a real button become the AWS IoT button's clicks: SINGLE, DOUBLE and LONG.

Pure: no I/O, no clock of its own. The caller passes every edge with the time it happened (any
monotonic clock, in seconds) and calls :meth:`ButtonClicks.tick` when :meth:`next_deadline` comes;
clicks come back from those calls, in the order they happened.

The rules, with the defaults of :class:`Timings`:

- LONG: the button is held for ``long`` (1.5 s) or more. It fires the moment the hold reaches the
  threshold, not on release, so someone who keeps holding gets the alarm at once; the release that
  follows is ignored. (AWS's button samples say only "a LONG clickType is sent if the first press
  lasts longer than 1.5 seconds".)
- DOUBLE: a second press starts less than ``double`` (0.5 s) after the first release. It fires on
  that second press; its release is ignored, and the next press starts a new click. AWS never
  published the original button's double-click window: 0.5 s is our choice (the usual desktop
  double-click time).
- SINGLE: a short press followed by ``double`` without a second press. It fires when that window
  closes, so a SINGLE comes ``double`` after its release.
- Debounce: a mechanical contact chatters for a few milliseconds when it closes or opens. A level
  counts only once it has held for ``debounce`` (30 ms); shorter blips are ignored, and an accepted
  level is dated from its first edge, so durations are not stretched by the wait.

A click's time is when its first press began.
"""

from __future__ import annotations

from dataclasses import dataclass

from iotbutton_cli.errors import usage_error

LONG_MS = 1500
DOUBLE_MS = 500
DEBOUNCE_MS = 30
# What the options accept: below these a person cannot press or release in time, above them a
# click waits too long to be told.
LONG_RANGE_MS = (300, 10_000)
DOUBLE_RANGE_MS = (100, 2_000)
DEBOUNCE_RANGE_MS = (0, 200)


@dataclass(frozen=True)
class Timings:
    """Thresholds in seconds."""

    long: float = LONG_MS / 1000
    double: float = DOUBLE_MS / 1000
    debounce: float = DEBOUNCE_MS / 1000

    @classmethod
    def from_ms(
        cls, long_ms: int = LONG_MS, double_ms: int = DOUBLE_MS, debounce_ms: int = DEBOUNCE_MS
    ) -> Timings:
        """Checked timings from the options, or a one-line ``bad-timing`` error."""
        for option, value, (low, high) in (
            ("--long-ms", long_ms, LONG_RANGE_MS),
            ("--double-ms", double_ms, DOUBLE_RANGE_MS),
            ("--debounce-ms", debounce_ms, DEBOUNCE_RANGE_MS),
        ):
            if not low <= value <= high:
                raise usage_error(
                    "bad-timing",
                    f"{option} must be between {low} and {high} ms, not {value}.",
                    f"The defaults are --long-ms {LONG_MS}, --double-ms {DOUBLE_MS} and "
                    f"--debounce-ms {DEBOUNCE_MS}.",
                )
        if debounce_ms >= double_ms:
            raise usage_error(
                "bad-timing",
                f"--debounce-ms ({debounce_ms}) must be shorter than --double-ms ({double_ms}).",
                "Otherwise the release between two presses would be taken for contact bounce.",
            )
        if double_ms >= long_ms:
            raise usage_error(
                "bad-timing",
                f"--double-ms ({double_ms}) must be shorter than --long-ms ({long_ms}).",
                "A long press is held longer than the pause that makes a double click.",
            )
        return cls(long_ms / 1000, double_ms / 1000, debounce_ms / 1000)

    def as_ms(self) -> dict[str, int]:
        return {
            "long_ms": round(self.long * 1000),
            "double_ms": round(self.double * 1000),
            "debounce_ms": round(self.debounce * 1000),
        }


@dataclass(frozen=True)
class Click:
    type: str  # SINGLE, DOUBLE or LONG
    pressed_at: float  # when its first press began (the caller's clock)


# Where the classifier is between clicks.
IDLE = "idle"
PRESSED = "pressed"  # the first press is down
RELEASED = "released"  # a short press is over: a second one now makes a DOUBLE
SPENT = "spent"  # a click was told while the button is still down: wait for its release


class Classifier:
    """Debounced presses and releases → clicks."""

    def __init__(self, timings: Timings | None = None) -> None:
        self.timings = timings or Timings()
        self.state = IDLE
        self.first = 0.0  # when the first press began
        self.released = 0.0  # when the first (short) press ended

    def press(self, at: float) -> list[Click]:
        clicks = self.tick(at)
        if self.state == IDLE:
            self.state, self.first = PRESSED, at
        elif self.state == RELEASED:
            clicks.append(Click("DOUBLE", self.first))
            self.state = SPENT
        return clicks

    def release(self, at: float) -> list[Click]:
        clicks = self.tick(at)
        if self.state == PRESSED:
            self.state, self.released = RELEASED, at
        elif self.state == SPENT:
            self.state = IDLE
        return clicks

    def tick(self, now: float) -> list[Click]:
        """The clicks that time alone decides by ``now``: a hold that became LONG, a window
        that closed on a SINGLE. (Written ``now >= start + threshold``, the sum
        :meth:`next_deadline` names, so a tick at that deadline always decides.)"""
        if self.state == PRESSED and now >= self.first + self.timings.long:
            self.state = SPENT
            return [Click("LONG", self.first)]
        if self.state == RELEASED and now >= self.released + self.timings.double:
            self.state = IDLE
            return [Click("SINGLE", self.first)]
        return []

    def next_deadline(self) -> float | None:
        """When :meth:`tick` may next decide something; None while nothing is pending."""
        if self.state == PRESSED:
            return self.first + self.timings.long
        if self.state == RELEASED:
            return self.released + self.timings.double
        return None

    def finish(self, now: float) -> list[Click]:
        """Stopping: what is already decided, and a SINGLE whose window is still open (nothing
        can make it a DOUBLE any more). A press still held and not yet LONG is no click."""
        clicks = self.tick(now)
        if self.state == RELEASED:
            clicks.append(Click("SINGLE", self.first))
        self.state = IDLE
        return clicks


class Debouncer:
    """Raw edges → levels that held for ``debounce`` seconds, each dated from its first edge."""

    def __init__(self, debounce: float) -> None:
        self.debounce = debounce
        self.level = False  # the accepted level: pressed or not
        self.raw = False  # the level the pin shows now
        self.raw_since = 0.0

    def edge(self, pressed: bool, at: float) -> list[tuple[bool, float]]:
        changes = self.settle(at)
        if pressed != self.raw:
            self.raw, self.raw_since = pressed, at
        return changes + self.settle(at)

    def settle(self, now: float) -> list[tuple[bool, float]]:
        if self.raw != self.level and now >= self.raw_since + self.debounce:
            self.level = self.raw
            return [(self.level, self.raw_since)]
        return []

    def pending_since(self) -> float | None:
        """When the level now waiting to settle began; None if none waits."""
        return self.raw_since if self.raw != self.level else None


class ButtonClicks:
    """A button's contact (debounced) or a keyboard's taps (no bounce) → clicks."""

    def __init__(self, timings: Timings | None = None) -> None:
        self.timings = timings or Timings()
        self.debouncer = Debouncer(self.timings.debounce)
        self.classifier = Classifier(self.timings)

    def edge(self, pressed: bool, at: float) -> list[Click]:
        """The contact closed (``pressed``) or opened at ``at``."""
        clicks = []
        for level, since in self.debouncer.edge(pressed, at):
            clicks += self._apply(level, since)
        return clicks + self._tick_classifier(at)

    def tap(self, at: float) -> list[Click]:
        """A short press and its release at ``at``, without bounce (Enter on a keyboard)."""
        return self.classifier.press(at) + self.classifier.release(at)

    def hold(self, at: float) -> list[Click]:
        """A press held exactly the LONG threshold from ``at``, and its release, without bounce
        (``l`` and Enter on a keyboard)."""
        return self.classifier.press(at) + self.classifier.release(at + self.timings.long)

    def tick(self, now: float) -> list[Click]:
        clicks = []
        for level, since in self.debouncer.settle(now):
            clicks += self._apply(level, since)
        return clicks + self._tick_classifier(now)

    def next_deadline(self) -> float | None:
        pending = self.debouncer.pending_since()
        deadlines = [self.classifier.next_deadline()]
        if pending is not None:
            deadlines.append(pending + self.timings.debounce)
        known = [deadline for deadline in deadlines if deadline is not None]
        return min(known) if known else None

    def finish(self, now: float) -> list[Click]:
        return self.tick(now) + self.classifier.finish(now)

    def _apply(self, pressed: bool, at: float) -> list[Click]:
        return self.classifier.press(at) if pressed else self.classifier.release(at)

    def _tick_classifier(self, now: float) -> list[Click]:
        # The classifier's time stops where an unsettled level begins: a release 10 ms before
        # the LONG threshold, still settling, must not let the threshold pass first.
        pending = self.debouncer.pending_since()
        return self.classifier.tick(now if pending is None else min(now, pending))
