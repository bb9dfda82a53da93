"""Run one job per item on a few threads, and stop promptly when the user presses Ctrl-C.

Jobs are handed to the pool a few at a time rather than all at once, so a run of 100,000 items
costs no more memory than a run of ten, and on Ctrl-C nothing new starts: the jobs in flight are
told to stop (``stopping`` is set; they check it between their steps) and are waited for, so
what they made is recorded, and then the interrupt goes on up to the CLI (exit status 130).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

POLL_SECONDS = 0.2  # how often the waiting main thread can notice a Ctrl-C
IN_FLIGHT_PER_WORKER = 2


class Stopped(Exception):
    """Raised inside a job that noticed the run is stopping; what it made so far is recorded."""


def run(
    items: Iterable[T],
    job: Callable[[T, threading.Event], R],
    on_done: Callable[[T, Future[R]], None],
    workers: int,
) -> None:
    """``job(item, stopping)`` for every item on ``workers`` threads; ``on_done`` on this one."""
    stopping = threading.Event()
    pending = iter(items)
    running: dict[Future[R], T] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bulk")

    def top_up() -> None:
        while not stopping.is_set() and len(running) < max(1, workers) * IN_FLIGHT_PER_WORKER:
            try:
                item = next(pending)
            except StopIteration:
                return
            running[pool.submit(job, item, stopping)] = item

    try:
        top_up()
        while running:
            done, _ = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                on_done(running.pop(future), future)
            top_up()
    except BaseException:
        stopping.set()
        for future in running:
            future.cancel()
        # The jobs in flight stop at their next step; a second Ctrl-C here ends the wait.
        wait(running)
        for future, item in running.items():
            if not future.cancelled():
                on_done(item, future)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
