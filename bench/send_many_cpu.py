"""What ``send_many``'s threads cost: the client's CPU per message at concurrency 16 against
concurrency 1, over the same client, against the minimal server (no latency: any difference is
the threads' own hand-offs, not waiting). Target: <= 1.15x.

The server runs in its own process, so the CPU counted (``time.process_time``) is the client's
alone. Both run in each round, in alternating order; the figure is the median of the per-round
ratios (``bench/_ratio.py``). Run: ``python bench/send_many_cpu.py [-n 2000] [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from _emulator import minimal_server
from _ratio import measure

from mobilgroup_backends import MobilgroupClient, SendResult


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000, help="messages per measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"bench/send_many_cpu.py -n {args.n} --concurrency {args.concurrency} "
          f"--rounds {args.rounds}  (load average {os.getloadavg()[0]:.2f})")
    messages: list[dict[str, Any]] = [{"phones": f"7903{i:07d}", "text": f"Заказ {i} готов"}
                                      for i in range(args.n)]
    with minimal_server() as server, MobilgroupClient.from_url(
            server.url, pool_size=args.concurrency) as client:
        client.send_many(messages[:args.concurrency], concurrency=args.concurrency)  # connect

        def cpu_per_message(concurrency: int) -> float:
            used = time.process_time()
            outcomes = client.send_many(messages, concurrency=concurrency)
            spent = time.process_time() - used
            assert all(isinstance(o, SendResult) for o in outcomes), outcomes[:3]
            return spent / args.n * 1e6

        rounds = measure({"one": lambda: cpu_per_message(1),
                          "many": lambda: cpu_per_message(args.concurrency)},
                         args.rounds, alternate=True)
    print(f"client CPU per message: concurrency 1 {rounds.median('one'):.0f} µs, "
          f"concurrency {args.concurrency} {rounds.median('many'):.0f} µs")
    print(f"  {args.concurrency}/1 = {rounds.describe('many', 'one')}  (target <= 1.15)")


if __name__ == "__main__":
    main()
