"""Many different messages with the gateway taking 20 ms per answer: send() in a loop against
send_many(concurrency=16), in the same run. Target: >= 12x.

Run: ``python bench/bulk.py [-n 1000] [--latency 0.02]``.
"""

from __future__ import annotations

import argparse
import time

from _emulator import emulator

from mobilgroup_backends import MobilgroupClient, SendResult


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1000, help="messages per measurement")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per answer")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    messages = [{"phones": f"7903{i:07d}", "text": f"Заказ {i} готов к выдаче"}
                for i in range(args.n)]
    with emulator(latency=args.latency) as server, MobilgroupClient.from_url(server.url) as client:
        client.balance()
        started = time.perf_counter()
        for message in messages:
            client.send(**message)
        sequential = time.perf_counter() - started

        started = time.perf_counter()
        outcomes = client.send_many(messages, concurrency=args.concurrency)
        concurrent = time.perf_counter() - started
    failed = [o for o in outcomes if not isinstance(o, SendResult)]
    print(f"sequential send():            {args.n / sequential:>8.1f} messages/s")
    print(f"send_many(concurrency={args.concurrency}):   {args.n / concurrent:>8.1f} messages/s")
    print(f"failed in send_many: {len(failed)}")
    print(f"speed-up = {sequential / concurrent:.1f}x  (target >= 12x)")


if __name__ == "__main__":
    main()
