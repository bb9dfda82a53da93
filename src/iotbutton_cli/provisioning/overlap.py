"""What a bulk run's buttons share so that the steps of one button overlap.

A button is a thing and a certificate, joined by two attachments. The thing does not need the
certificate, nor the certificate the thing, and AttachPolicy does not need AttachThingPrincipal:
run one after another, each waits a round trip for the other. :meth:`Overlap.together` runs such
steps at once and returns only when every one of them has ended, so a failure never leaves a step
running behind the caller's back (the first failure is raised, the others' results are kept in
the registry as each step records its own).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from iotbutton_cli.provisioning.keysupply import KeySupply


@dataclass
class Overlap:
    """A pool for the steps that run beside a button's own thread, and keys made ahead."""

    beside: ThreadPoolExecutor | None = None
    keys: KeySupply | None = None

    def key(self, key_type: str) -> Any:
        """A key of ``key_type`` made ahead, or None (the caller makes its own)."""
        if self.keys is not None and self.keys.key_type == key_type:
            return self.keys.take()
        return None

    def together(self, *steps: Callable[[], Any]) -> list[Any]:
        """Run ``steps`` at once (the first on this thread); their results, in order."""
        if self.beside is None or len(steps) < 2:
            return [step() for step in steps]
        futures: list[Future[Any]] = [self.beside.submit(step) for step in steps[1:]]
        try:
            first = steps[0]()
        finally:
            wait(futures)
        return [first, *(future.result() for future in futures)]


ALONE = Overlap()  # one step after another: single-button commands
