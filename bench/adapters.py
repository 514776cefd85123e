"""What the adapters cost per message, against a bare keep-alive ``client.send`` on the same server.

(a) ``MobilgroupClient.send`` on one kept client: the baseline.
(b) django-sms ``sms.send_sms(...)`` with no connection given: a new backend per message, which
    takes the process's shared client for its settings (so the connection is kept alive).
(c) a kept ``apprise.Apprise`` object's ``notify``: one notification, one SMS.

Each round measures all three, interleaved, on one emulator (its own process); the ratios b/a
and c/a are taken per round and their median printed, of the time and of this process's CPU per
message (the emulator's CPU is in the time, not in the CPU). Targets: Django <= 1.1x,
Apprise <= 2.5x.
Run: ``python bench/adapters.py [-n 500] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from _emulator import Running, emulator

PHONE = "79031234567"
TEXT = "Order 1234 shipped"


def setup_django(server: Running) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["sms"], SMS_BACKEND="mobilgroup_backends.django.SmsBackend",
        MOBILGROUP={"URL": server.url}, USE_TZ=True)
    django.setup()


def bare(server: Running) -> Callable[[int], float]:
    from mobilgroup_backends import MobilgroupClient

    client = MobilgroupClient.from_url(server.url)
    client.balance()  # connected outside the timing, as the adapters' first message is

    def run(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            client.send(PHONE, TEXT)
        return time.perf_counter() - started

    return run


def django_send_sms(server: Running) -> Callable[[int], float]:
    import sms

    sms.send_sms(TEXT, recipients=[PHONE])  # the shared client's first connection

    def run(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            assert sms.send_sms(TEXT, recipients=[PHONE]) == 1
        return time.perf_counter() - started

    return run


def apprise_notify(server: Running) -> Callable[[int], float]:
    import apprise

    import mobilgroup_backends.apprise  # noqa: F401  registers mobilgroup://

    alerts = apprise.Apprise()
    assert alerts.add(f"{server.url.replace('?', f'/{PHONE}?', 1)}")
    assert alerts.notify(body=TEXT)

    def run(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            assert alerts.notify(body=TEXT)
        return time.perf_counter() - started

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=500, help="messages per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (the median ratio counts)")
    args = parser.parse_args()
    print(f"bench/adapters.py -n {args.n} --rounds {args.rounds}  "
          f"(load average {os.getloadavg()[0]:.2f})")
    with emulator() as server:
        setup_django(server)
        runs = {"a client.send": bare(server), "b sms.send_sms": django_send_sms(server),
                "c Apprise.notify": apprise_notify(server)}
        ratios: dict[str, list[float]] = {"b": [], "c": [], "b cpu": [], "c cpu": []}
        best: dict[str, float] = {}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            took: dict[str, float] = {}
            for name, run in runs.items():
                used = time.process_time()
                took[name] = run(args.n) / args.n
                cpu[name].append((time.process_time() - used) / args.n)
            base = took["a client.send"]
            ratios["b"].append(took["b sms.send_sms"] / base)
            ratios["c"].append(took["c Apprise.notify"] / base)
            ratios["b cpu"].append(cpu["b sms.send_sms"][-1] / cpu["a client.send"][-1])
            ratios["c cpu"].append(cpu["c Apprise.notify"][-1] / cpu["a client.send"][-1])
            for name, seconds in took.items():
                best[name] = min(best.get(name, seconds), seconds)
    for name, seconds in best.items():
        print(f"{name:<20} {seconds * 1e6:>8.0f} µs per message (best round), "
              f"{statistics.median(cpu[name]) * 1e6:>6.0f} µs CPU (median)")
    for key, what, target in (("b", "Django send_sms, no connection", 1.1),
                              ("c", "kept Apprise object's notify  ", 2.5)):
        print(f"{key}/a = {statistics.median(ratios[key]):.2f} time, "
              f"{statistics.median(ratios[key + ' cpu']):.2f} CPU  {what}  (target <= {target})")


if __name__ == "__main__":
    main()
