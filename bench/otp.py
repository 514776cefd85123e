"""One-time codes: the time from asking for a code to the gateway's answer, against a bare
keep-alive ``client.send`` of the same text on the same server.

(a) ``MobilgroupClient.send`` on one kept client: the baseline.
(b) django-otp: ``SmsDevice.generate_challenge()`` (a new token saved in the database, the text,
    the settings, the toll-fraud guard counting in Django's cache, the shared client).
(c) django-allauth: ``AccountAdapter.send_verification_code_sms(...)``.

Each round times every call of each contender, interleaved (every other round in reverse
order), on one emulator in its own process; p50 and p99 are taken within the round, their
ratios to the baseline's per round, and the median ratio over the rounds printed with its spread
(``_ratio.Rounds``). Target: <= 1.2x. The guard counts in a local-memory cache here; a shared
cache (Redis) adds its own round trip. Run: ``python bench/otp.py [-n 300] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable

from _emulator import Running, emulator
from _ratio import Rounds

PHONES = [f"+7900{n:07d}" for n in range(1, 201)]
TEXT = "123456 is your code. Valid 5 min."


def setup_django(server: Running) -> None:
    import django
    from django.conf import settings
    from django.core.management import call_command

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_otp",
                        "mobilgroup_backends.django", "mobilgroup_backends.django.otp",
                        "allauth", "allauth.account"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        MOBILGROUP={"URL": server.url, "OTP_PER_PHONE_HOUR": 100, "OTP_PER_PHONE_DAY": 1000,
                    "OTP_PER_HOUR": 100_000},
        ACCOUNT_ADAPTER="mobilgroup_backends.django.allauth.AccountAdapter",
        MIDDLEWARE=["allauth.account.middleware.AccountMiddleware"],
        USE_TZ=True, SECRET_KEY="bench-only")
    django.setup()
    call_command("migrate", verbosity=0)


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[98]


def bare(server: Running) -> Callable[[], float]:
    from mobilgroup_backends import MobilgroupClient

    client = MobilgroupClient.from_url(server.url)
    client.balance()  # connected outside the timing, as the plug points' first code is
    phones = itertools.cycle(PHONES)
    return lambda: _timed(lambda: client.send(next(phones), TEXT))


def django_otp_challenge() -> Callable[[], float]:
    from django.contrib.auth import get_user_model

    from mobilgroup_backends.django.otp.models import SmsDevice

    user = get_user_model().objects.create_user("bench-otp")
    devices = itertools.cycle([SmsDevice.objects.create(user=user, name=f"p{n}", number=phone)
                               for n, phone in enumerate(PHONES)])
    next(devices).generate_challenge()  # the shared client's first connection

    def once() -> None:
        assert next(devices).generate_challenge() == "sent by SMS"

    return lambda: _timed(once)


def allauth_code() -> Callable[[], float]:
    from allauth.account.adapter import get_adapter
    from django.contrib.auth import get_user_model

    adapter = get_adapter()
    user = get_user_model().objects.create_user("bench-allauth")
    phones = itertools.cycle(PHONES)
    return lambda: _timed(lambda: adapter.send_verification_code_sms(
        user=user, phone=next(phones), code="BCDF-GHJK"))


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=300, help="codes per contender per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (the median ratio counts)")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds the emulator waits before each answer (default 0: the "
                             "plug points' own cost, at its largest share)")
    args = parser.parse_args()
    with emulator(latency=args.latency) as server:
        setup_django(server)
        contenders = {"a client.send": bare(server),
                      "b generate_challenge": django_otp_challenge(),
                      "c allauth adapter": allauth_code()}
        rounds = Rounds({f"{name} {cut}": [] for name in contenders for cut in ("p50", "p99")})
        for number in range(max(1, args.rounds)):
            order = list(contenders.items())
            if number % 2:
                order.reverse()
            for name, once in order:
                p50, p99 = percentiles([once() for _ in range(args.n)])
                rounds.values[f"{name} p50"].append(p50)
                rounds.values[f"{name} p99"].append(p99)
    base = rounds.median("a client.send p50")
    for name in contenders:
        p50 = rounds.median(name + " p50")
        print(f"{name:<22} p50 {p50 * 1e6:>7.0f} µs   "
              f"p99 {rounds.median(name + ' p99') * 1e6:>7.0f} µs   "
              f"(median of rounds; p50 {(p50 - base) * 1e6:+.0f} µs)")
    for label, name in (("b/a", "b generate_challenge"), ("c/a", "c allauth adapter")):
        for cut in ("p50", "p99"):
            print(f"{label} {cut} = {rounds.describe(f'{name} {cut}', f'a client.send {cut}')}"
                  f"  (target <= 1.2)")


if __name__ == "__main__":
    main()
