"""Many different messages with the gateway taking 20 ms per answer: send() in a loop against
send_many(concurrency=16), in the same run. Target: >= 12x (the median of per-round ratios).

Run: ``python bench/bulk.py [-n 1000] [--latency 0.02] [--rounds 1]``.
"""

from __future__ import annotations

import argparse
import time

from _emulator import emulator
from _ratio import measure

from mobilgroup_backends import MobilgroupClient, SendResult


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1000, help="messages per measurement")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per answer")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of both; the median ratio")
    args = parser.parse_args()
    messages = [{"phones": f"7903{i:07d}", "text": f"Заказ {i} готов к выдаче"}
                for i in range(args.n)]
    with emulator(latency=args.latency) as server, MobilgroupClient.from_url(server.url) as client:
        client.balance()
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
