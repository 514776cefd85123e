"""Many different messages with the gateway taking 20 ms per answer: send() in a loop against
send_many(concurrency=16), in the same run. Target: >= 12x.

Both run in each round, back to back, over the same client; the figure is the median of the
per-round ratios, with their range (``bench/_ratio.py``). One send_many before the rounds opens
the pool's connections, as the one connection of the loop is opened before them. The most
send_many can gain is ``concurrency`` times (16x), less what the client and the emulator spend
in CPU per message on a machine of few cores.

Run: ``python bench/bulk.py [-n 400] [--latency 0.02] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _emulator import emulator
from _ratio import measure

from mobilgroup_backends import MobilgroupClient, SendResult


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=400, help="messages per measurement")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per answer")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of both; the median ratio")
    args = parser.parse_args()
    print(f"bench/bulk.py -n {args.n} --latency {args.latency} --concurrency {args.concurrency} "
          f"--rounds {args.rounds}")
    messages: list[dict[str, Any]] = [{"phones": f"7903{i:07d}", "text": f"Заказ {i} готов к выдаче"}
                                      for i in range(args.n)]
    with emulator(latency=args.latency) as server, MobilgroupClient.from_url(
            server.url, pool_size=args.concurrency) as client:
        client.balance()
        client.send_many([{"phones": "79030000000", "text": f"warm-up {i}"}
                          for i in range(args.concurrency)], concurrency=args.concurrency)
        failed: list[object] = []

        def sequential() -> float:
            started = time.perf_counter()
            for message in messages:
                client.send(**message)
            return time.perf_counter() - started

        def concurrent() -> float:
            started = time.perf_counter()
            outcomes = client.send_many(messages, concurrency=args.concurrency)
            took = time.perf_counter() - started
            failed.extend(o for o in outcomes if not isinstance(o, SendResult))
            return took

        rounds = measure({"sequential": sequential, "concurrent": concurrent}, args.rounds)
    print(f"sequential send():            {args.n / rounds.median('sequential'):>8.1f} messages/s")
    print(f"send_many(concurrency={args.concurrency}):   "
          f"{args.n / rounds.median('concurrent'):>8.1f} messages/s")
    print(f"failed in send_many: {len(failed)}")
    print(f"speed-up = {rounds.describe('sequential', 'concurrent')}  (target >= 12x)")


if __name__ == "__main__":
    main()
