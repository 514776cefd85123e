"""One-time codes: the time from asking for a code to the gateway's answer, against a bare
keep-alive ``client.send`` of the same text on the same server.

(a) ``MobilgroupClient.send`` on one kept client: the baseline.
(b) django-otp: ``SmsDevice.generate_challenge()`` (a new token saved in the database, the text,
    the settings, the toll-fraud guard counting in Django's cache, the shared client).
(c) django-allauth: ``AccountAdapter.send_verification_code_sms(...)``.

Each round times every call of each contender, interleaved (every other round in reverse
order); p50 and p99 are taken within the round, their ratios to the baseline's per round, and
the median ratio over the rounds printed with its spread (``_ratio.Rounds``).

Two passes, each on an emulator in its own process:

1. the target: the emulator adds ``--latency`` to each answer (default 20 ms, like a real
   gateway, as ``bench/serve.py`` and ``bench/bulk.py`` model it), so the ratio says what a
   person at a login form waits for beyond the gateway itself. Target: <= 1.2x.
2. the plug points' own cost: the same with no latency, where the emulator answers in about
   0.15 ms, a hundred times faster than a gateway across a network, so that every microsecond
   of ours shows. It prints the cost in microseconds and the gateway answer time above which
   the ratio stays within 1.2x; no target (``--no-own-cost`` skips it).

The guard counts in a local-memory cache here; a shared cache (Redis) adds its own round trips.
Run: ``python bench/otp.py [-n 200] [--rounds 5] [--latency 0.02]``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections.abc import Callable

from _emulator import Running, emulator
from _ratio import Rounds

#: Codes one phone gets in a pass, at most: well within the guard's highest hourly limit (100).
CODES_PER_PHONE = 40
_next_phone = 1


def phones_for(codes: int) -> list[str]:
    """Numbers of their own for ``codes`` codes (at least 200), none shared with another pass,
    so that the guard, which stays on, never refuses one: a refused code is no send to time."""
    global _next_phone
    count = max(200, -(-codes // CODES_PER_PHONE))
    start, _next_phone = _next_phone, _next_phone + count
    return [f"+7900{n:07d}" for n in range(start, start + count)]


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


def bare(server: Running, numbers: list[str]) -> Callable[[], float]:
    from mobilgroup_backends import MobilgroupClient

    client = MobilgroupClient.from_url(server.url)
    client.balance()  # connected outside the timing, as the plug points' first code is
    phones = itertools.cycle(numbers)
    return lambda: _timed(lambda: client.send(next(phones), TEXT))


def django_otp_challenge(numbers: list[str]) -> Callable[[], float]:
    from django.contrib.auth import get_user_model

    from mobilgroup_backends.django.otp.models import SmsDevice

    user, _ = get_user_model().objects.get_or_create(username="bench-otp")
    devices = itertools.cycle([SmsDevice.objects.create(user=user, name=f"p{n}", number=phone)
                               for n, phone in enumerate(numbers)])
    next(devices).generate_challenge()  # the shared client's first connection

    def once() -> None:
        assert next(devices).generate_challenge() == "sent by SMS"

    return lambda: _timed(once)


def allauth_code(numbers: list[str]) -> Callable[[], float]:
    from allauth.account.adapter import get_adapter
    from django.contrib.auth import get_user_model

    adapter = get_adapter()
    user, _ = get_user_model().objects.get_or_create(username="bench-allauth")
    phones = itertools.cycle(numbers)
    return lambda: _timed(lambda: adapter.send_verification_code_sms(
        user=user, phone=next(phones), code="BCDF-GHJK"))


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def run_pass(server: Running, n: int, rounds_wanted: int) -> Rounds:
    """Every contender against ``server`` (the settings' URL pointed at it), ``rounds_wanted``
    rounds of ``n`` calls each."""
    from django.conf import settings
    from django.test import override_settings

    from mobilgroup_backends.django.guard import counters

    codes = n * max(1, rounds_wanted) + 1  # and one before the timing
    with override_settings(MOBILGROUP={**settings.MOBILGROUP, "URL": server.url}):
        contenders = {"a client.send": bare(server, phones_for(codes)),
                      "b generate_challenge": django_otp_challenge(phones_for(codes)),
                      "c allauth adapter": allauth_code(phones_for(codes))}
        rounds = Rounds({f"{name} {cut}": [] for name in contenders for cut in ("p50", "p99")})
        for number in range(max(1, rounds_wanted)):
            order = list(contenders.items())
            if number % 2:
                order.reverse()
            for name, once in order:
                p50, p99 = percentiles([once() for _ in range(n)])
                rounds.values[f"{name} p50"].append(p50)
                rounds.values[f"{name} p99"].append(p99)
        refused = {name: count for name, count in counters().items()
                   if name.startswith("refused_") and count}
    if refused:
        raise SystemExit(f"the toll-fraud guard refused codes ({refused}): the figures would "
                         "time refusals, not sends")
    return rounds


def report(rounds: Rounds, *, target: bool) -> None:
    base = rounds.median("a client.send p50")
    for name in CONTENDERS:
        p50 = rounds.median(name + " p50")
        print(f"{name:<22} p50 {p50 * 1e6:>7.0f} µs   "
              f"p99 {rounds.median(name + ' p99') * 1e6:>7.0f} µs   "
              f"(median of rounds; p50 {(p50 - base) * 1e6:+.0f} µs)")
    for label, name in (("b/a", "b generate_challenge"), ("c/a", "c allauth adapter")):
        for cut in ("p50", "p99"):
            print(f"{label} {cut} = {rounds.describe(f'{name} {cut}', f'a client.send {cut}')}"
                  + ("  (target <= 1.2)" if target else ""))
        if not target:
            extra = rounds.median(name + " p50") - base
            # (answer + extra) / answer <= 1.2 once the gateway's answer takes 5x our extra.
            print(f"{label} own cost p50 {extra * 1e6:+.0f} µs: within 1.2x of any gateway "
                  f"answering in {max(0.0, extra) * 5 * 1e3:.2f} ms or more")


CONTENDERS = ("a client.send", "b generate_challenge", "c allauth adapter")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=200, help="codes per contender per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (the median ratio counts)")
    parser.add_argument("--latency", type=float, default=0.02,
                        help="seconds the emulator waits before each answer in the target's "
                             "pass (default 0.02: a gateway across a network)")
    parser.add_argument("--no-own-cost", action="store_true",
                        help="skip the pass with no latency (the plug points' own cost)")
    args = parser.parse_args()
    with emulator(latency=args.latency) as server:
        setup_django(server)
        print(f"bench/otp.py -n {args.n} --rounds {args.rounds}; load average "
              f"{os.getloadavg()[0]:.2f}")
        print(f"the target: the emulator answers after {args.latency * 1e3:g} ms")
        report(run_pass(server, args.n, args.rounds), target=True)
    if args.latency and not args.no_own_cost:
        with emulator(latency=0.0) as server:
            print("the plug points' own cost: the emulator answers at once")
            report(run_pass(server, args.n, args.rounds), target=False)


if __name__ == "__main__":
    main()
