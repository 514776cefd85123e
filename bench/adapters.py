"""What the adapters cost per message, against a bare keep-alive ``client.send`` on the same server.

(a) ``MobilgroupClient.send`` on one kept client: the baseline.
(b) django-sms ``sms.send_sms(...)`` with no connection given: a new backend per message, which
    takes the process's shared client for its settings (so the connection is kept alive).
(c) a kept ``apprise.Apprise`` object's ``notify``: one notification, one SMS.
(d) the floor of (b): django-sms ``sms.send_sms(...)`` with a backend that does nothing but
    ``client.send`` on one kept client (no settings, no status, no signals): what django-sms
    itself costs per message (its ``Message``, the backend looked up by name and made, its
    ``post_send``), which no backend can take away.

Each round measures all four, interleaved, on one emulator (its own process); the ratios b/a,
c/a and d/a are taken per round and their median printed, of the time and of this process's CPU per
message (the emulator's CPU is in the time, not in the CPU). Targets: Django <= 1.1x,
Apprise <= 2.5x.
Run: ``python bench/adapters.py [-n 500] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator

from _emulator import Running, emulator

PHONE = "79031234567"
BACKEND = "mobilgroup_backends.django.SmsBackend"
TEXT = "Order 1234 shipped"


def setup_django(server: Running) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["sms"], SMS_BACKEND=BACKEND,
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


class FloorBackend:
    """A django-sms backend that only sends: (d)."""

    client: object = None

    def __init__(self, fail_silently: bool = False, **kwargs: object) -> None:
        self.fail_silently = fail_silently

    def send_messages(self, messages: list[object]) -> int:
        for message in messages:
            self.client.send(message.recipients, message.body)  # type: ignore[attr-defined]
        return len(messages)


def django_floor(server: Running) -> Callable[[int], float]:
    import sms
    from django.conf import settings

    from mobilgroup_backends import MobilgroupClient

    FloorBackend.client = MobilgroupClient.from_url(server.url)

    @contextlib.contextmanager
    def floor_backend() -> Iterator[None]:
        settings.SMS_BACKEND = f"{__name__}.FloorBackend"  # for this contender's messages only
        try:
            yield
        finally:
            settings.SMS_BACKEND = BACKEND

    with floor_backend():
        sms.send_sms(TEXT, recipients=[PHONE])  # the kept client's first connection

    def run(n: int) -> float:
        with floor_backend():
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
                "c Apprise.notify": apprise_notify(server), "d django-sms floor": django_floor(server)}
        ratios: dict[str, list[float]] = {key: [] for key in ("b", "c", "d", "b cpu", "c cpu",
                                                               "d cpu")}
        best: dict[str, float] = {}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            took: dict[str, float] = {}
            for name, run in runs.items():
                used = time.process_time()
                took[name] = run(args.n) / args.n
                cpu[name].append((time.process_time() - used) / args.n)
            base = took["a client.send"]
            for key, name in (("b", "b sms.send_sms"), ("c", "c Apprise.notify"),
                              ("d", "d django-sms floor")):
                ratios[key].append(took[name] / base)
                ratios[key + " cpu"].append(cpu[name][-1] / cpu["a client.send"][-1])
            for name, seconds in took.items():
                best[name] = min(best.get(name, seconds), seconds)
    for name, seconds in best.items():
        print(f"{name:<20} {seconds * 1e6:>8.0f} µs per message (best round), "
              f"{statistics.median(cpu[name]) * 1e6:>6.0f} µs CPU (median)")
    for key, what, target in (("b", "Django send_sms, no connection", "(target <= 1.1)"),
                              ("c", "kept Apprise object's notify  ", "(target <= 2.5)"),
                              ("d", "django-sms, a do-nothing backend", "(the floor of b)")):
        print(f"{key}/a = {statistics.median(ratios[key]):.2f} time, "
              f"{statistics.median(ratios[key + ' cpu']):.2f} CPU  {what}  {target}")


if __name__ == "__main__":
    main()
