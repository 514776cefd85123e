"""What the scaling benchmarks (``scale.py``, ``scale_outbox.py``) share: the in-process baseline
they are compared with, and the bounded wait for work done elsewhere (worker processes)."""

from __future__ import annotations

import time
from collections.abc import Callable

from mobilgroup_backends import MobilgroupClient, SendResult


def send_many_rate(url: str, n: int, concurrency: int, *, tag: str = "baseline") -> float:
    """The baseline: ``n`` messages through ``client.send_many`` in this process, ``concurrency``
    at once, on connections made beforehand; messages per second. Phones 7904xxxxxxx."""
    messages = [{"phones": f"7904{i:07d}", "text": f"{tag} {i}"} for i in range(n)]
    with MobilgroupClient.from_url(url, timeout=10, retries=2) as client:
        client.send_many(messages[:concurrency], concurrency=concurrency)  # connect first
        started = time.perf_counter()
        outcomes = client.send_many(messages, concurrency=concurrency)
        elapsed = time.perf_counter() - started
    failed = [o for o in outcomes if not isinstance(o, SendResult)]
    assert not failed, failed[:3]
    return n / elapsed


def wait_for(done: Callable[[], int], target: int, *, timeout: float = 600,
             alive: Callable[[], bool] = lambda: True, poll: float = 0.01) -> float:
    """Seconds until ``done()`` reaches ``target``; an error after ``timeout`` seconds, or as soon
    as ``alive()`` says the processes doing the work are gone."""
    started = time.perf_counter()
    deadline = started + timeout
    while (count := done()) < target:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {count} of {target} done in {timeout:g} s")
        if not alive():
            raise RuntimeError(f"a worker died with {count} of {target} done")
        time.sleep(poll)
    return time.perf_counter() - started
