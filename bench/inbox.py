"""What one poll of the inbox page costs with a full outbox, next to a nearly empty one.

The page asks ``GET /api/state`` (one page of 50 messages, the clock, accounts, faults, rejected
requests) several times a second. Two emulators, filled through the real client: one with
``--messages`` accepted messages (10,000 by default), one with 100. Each round times a poll of
each, over HTTP on 127.0.0.1, back to back, then a search that matches a fraction of the big
outbox; the ratio is the median of the per-round ratios (``bench/_ratio.py``). The answers are
the same size (one page), so the ratio is what the outbox's size adds: the search, the parts and
the lifetimes looked at per poll. Target: a poll of the full outbox well under the page's poll
interval (800 ms); the ratio says how it grows. Run: ``python bench/inbox.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator

import requests
from _ratio import measure

from mobilgroup_backends import MobilgroupClient
from mobilgroup_backends.emulator import Emulator

SMALL = 100
PAGE = 50
POLL_INTERVAL_MS = 800


@contextlib.contextmanager
def filled(count: int) -> Iterator[Emulator]:
    with Emulator([f"1000:bench:bench-password:{count}"], freeze_clock=True) as emulator:
        with MobilgroupClient.from_url(emulator.url(retries=0)) as client:
            outcomes = client.send_many(
                [(f"7903{n:07d}", f"Заказ №{n} готов к выдаче") for n in range(count)],
                concurrency=8)
        failed = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
        if failed or len(emulator.outbox) != count:
            raise SystemExit(f"filling the emulator failed: {failed[:3]}")
        yield emulator


def poll(session: requests.Session, emulator: Emulator, query: str = "") -> Callable[[], float]:
    url = f"http://127.0.0.1:{emulator.port}/api/state"

    def once() -> float:
        started = time.perf_counter()
        answer = session.get(url, params={"limit": PAGE, "offset": 0, "q": query}, timeout=30)
        answer.raise_for_status()
        if len(answer.json()["messages"]) != PAGE:
            raise SystemExit("a poll did not return a full page")
        return time.perf_counter() - started

    return once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000, help="messages in the big outbox")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with filled(args.messages) as big, filled(SMALL) as small, requests.Session() as session:
        rounds = measure({"big": poll(session, big), "small": poll(session, small),
                          "search": poll(session, big, "+7 903 000-1")},
                         args.rounds, alternate=True)
    print(f"GET /api/state, a page of {PAGE}, over HTTP on 127.0.0.1 "
          f"(median of {args.rounds} rounds):")
    print(f"  {SMALL:>6} messages: {rounds.median('small') * 1000:7.1f} ms")
    print(f"  {args.messages:>6} messages: {rounds.median('big') * 1000:7.1f} ms "
          f"({rounds.describe('big', 'small')} the small outbox; the page polls every "
          f"{POLL_INTERVAL_MS} ms)")
    print(f"  {args.messages:>6}, searched: {rounds.median('search') * 1000:7.1f} ms "
          f"({rounds.describe('search', 'small')} the small outbox)")


if __name__ == "__main__":
    main()
