"""``mobilgroup demo``: the whole package against one local emulator, in a few seconds.

Each step uses a real part the way an application would: the Python client, a Django project
configured by settings alone (django-sms), an Apprise URL, a ``logging`` handler from
``dictConfig``. Then the emulator's clock jumps past the messages' lifetime so that the delivery
reports are final. Every message also shows on the inbox page; ``--keep-open`` leaves it running.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TextIO

from .emulator import log_requests, port_number, start_emulator
from .output import EXIT_OK, print_status

if TYPE_CHECKING:
    from ..emulator import Emulator

TEXT = "Привет! Ваш код подтверждения: 4521"
PHONES = ("+7 903 958-74-54", "+7 923 641-15-79", "+7 913 000-00-00")
#: The phone that is never delivered, by the emulator's default ``undeliverable`` rule.
UNDELIVERABLE = "+7 913 000-00-00"
ALERT_PHONE = "79039587454"


def add_command(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="show the whole package against a built-in emulator",
        description="Send through the Python client, Django, Apprise and logging to a local "
                    "emulator, then show the delivery reports. Nothing leaves this machine.")
    demo.add_argument("--keep-open", action="store_true",
                      help="leave the emulator and its inbox page running afterwards (Ctrl+C "
                           "stops it)")
    demo.add_argument("--port", type=port_number, default=0,
                      help="port for the emulator and its page (default: any free port)")
    demo.set_defaults(handler=run_demo)


class Demo:
    """One run: the emulator, the output, and what each step sent."""

    def __init__(self, emulator: Emulator, out: TextIO) -> None:
        self.emulator = emulator
        self.out = out
        self.sent: list[tuple[str, int]] = []  # (step, request id) for the reports
        self.skipped: list[str] = []
        self.opening = Decimal(emulator.account.balance)

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def step(self, number: int, title: str, action: Callable[[], None]) -> None:
        self.say(f"\n{number}. {title}")
        before = len(self.emulator.outbox)
        action()
        for message in self.emulator.outbox[before:]:
            self.sent.append((title.split(":")[0], message.request_id))
            self.say(f"   -> the emulator accepted request {message.request_id}: "
                     f"{message.text!r} to {', '.join(message.phones)}")

    def skip(self, what: str, extra: str, missing: ImportError) -> None:
        self.skipped.append(what)
        self.say(f"   skipped: {missing.name or missing} is not installed. To add it:\n"
                 f"   pip install 'mobilgroup-backends[{extra}]'")

    # --- the steps -------------------------------------------------------------------------

    def python_client(self) -> None:
        from ..client import MobilgroupClient

        self.say(f"   client = MobilgroupClient.from_url(url)\n"
                 f"   client.send({list(PHONES)!r}, {TEXT!r})")
        with MobilgroupClient.from_url(self.emulator.url()) as client:
            client.send(list(PHONES), TEXT, sender="Demo")
        self.say(f"   {UNDELIVERABLE} fails on purpose: the emulator never delivers numbers "
                 "ending in 0000\n   (its 'undeliverable' rule), so step 5 shows a "
                 "'not delivered' report next to the delivered ones.")

    def django(self) -> None:
        try:
            import django
            import sms
            from django.conf import settings
        except ImportError as missing:
            self.skip("Django", "django", missing)
            return
        url = self.emulator.url(sender="Shop")
        self.say('   settings.configure(SMS_BACKEND="mobilgroup_backends.django.SmsBackend", '
                 'MOBILGROUP={"URL": url})\n'
                 '   sms.send_sms("Ваш заказ №1042 отправлен", recipients=["+79039587454"])')
        options: dict[str, Any] = {}
        if settings.configured:  # inside a project already: do not touch its settings
            options = {"connection": sms.get_connection(
                "mobilgroup_backends.django.SmsBackend", url=url)}
        else:
            settings.configure(SMS_BACKEND="mobilgroup_backends.django.SmsBackend",
                               MOBILGROUP={"URL": url})
            django.setup()
        sms.send_sms("Ваш заказ №1042 отправлен", recipients=["+79039587454"], **options)

    def apprise(self) -> None:
        try:
            import apprise

            import mobilgroup_backends.apprise  # noqa: F401 - registers mobilgroup://
        except ImportError as missing:
            self.skip("Apprise", "apprise", missing)
            return
        self.say(f"   apprise.Apprise().add(\"mobilgroup://demo:***@1000/{ALERT_PHONE}?...\")"
                 ".notify(title=\"web-1\", body=\"Диск заполнен на 95%\")")
        notifier = apprise.Apprise()
        notifier.add(self.emulator.url(ALERT_PHONE))
        if not notifier.notify(title="web-1", body="Диск заполнен на 95%"):
            self.say("   Apprise reported a failure (see its log above)")

    def logging_handler(self) -> None:
        import logging
        import logging.config

        self.say('   logging.config.dictConfig({... "class": '
                 '"mobilgroup_backends.logging.SmsHandler", "level": "CRITICAL" ...})\n'
                 '   logging.getLogger("shop.payments").critical("Платёжный шлюз не отвечает")')
        logging.config.dictConfig({
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"sms": {"class": "mobilgroup_backends.logging.SmsHandler",
                                 "url": self.emulator.url(ALERT_PHONE), "level": "CRITICAL"}},
            "loggers": {"shop.payments": {"handlers": ["sms"], "level": "CRITICAL",
                                          "propagate": False}},
        })
        logger = logging.getLogger("shop.payments")
        logger.critical("Платёжный шлюз не отвечает")
        for handler in logger.handlers:
            handler.flush()  # the handler sends from its own thread; wait for it here
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()

    def reports(self) -> None:
        from ..client import MobilgroupClient
        from ..emulator.inbox import end_of_lifetimes

        clock = self.emulator.clock
        end = end_of_lifetimes(self.emulator)
        if end is not None and end > clock.now():
            clock.advance(end - clock.now())
        self.say(f"   emulator clock now {clock.now():%Y-%m-%d %H:%M} (every lifetime is over)")
        with MobilgroupClient.from_url(self.emulator.url()) as client:
            for step, request_id in self.sent:
                self.say(f"   {step}:")
                buffer = io.StringIO()
                print_status(client.status(request_id), False, buffer)
                self.say("\n".join("     " + line for line in buffer.getvalue().splitlines()))
            balance = client.balance()
        self.say(f"   Balance: {self.opening} -> {balance} ({self.opening - balance} spent, "
                 f"{self.emulator.price_per_sms} per recipient)")


def run_demo(args: argparse.Namespace) -> int:
    from ..emulator import Emulator

    out = sys.stdout
    started = time.perf_counter()
    emulator = Emulator(port=args.port)
    try:
        start_emulator(emulator, args.port)
        demo = Demo(emulator, out)
        page_note = ("every message below shows up there too" if args.keep_open else
                     "open while the demo runs; add --keep-open to browse it afterwards")
        demo.say("mobilgroup demo: the whole package against a local emulator of the gateway\n"
                 f"Inbox page: http://127.0.0.1:{emulator.port}/ ({page_note})")
        demo.step(1, "Python client: a Cyrillic text to three phones", demo.python_client)
        demo.step(2, "Django: a project configured by settings alone (django-sms)", demo.django)
        demo.step(3, "Apprise: a mobilgroup:// URL notifies", demo.apprise)
        demo.step(4, "logging: an SmsHandler from dictConfig texts a CRITICAL", demo.logging_handler)
        demo.say("\n5. The clock moves past the lifetime: delivery reports and balance")
        demo.reports()
        demo.say("\n6. Against the real gateway, the same code takes one URL:\n"
                 "   export MOBILGROUP_URL='mobilgroup://LOGIN:PASSWORD@USER_ID?sender=ALIAS'\n"
                 "   mobilgroup send +79031234567 --text 'Hello from mobilgroup-backends'")
        took = time.perf_counter() - started
        recipients = sum(len(m.phones) for m in emulator.outbox)
        skipped = f"; skipped: {', '.join(demo.skipped)}" if demo.skipped else ""
        demo.say(f"\nSummary: {len(emulator.outbox)} messages to {recipients} recipients "
                 f"accepted by the emulator in {took:.1f} s{skipped}.")
        if args.keep_open:
            log_requests(out)
            demo.say(f"\nThe emulator stays open. Inbox page: http://127.0.0.1:{emulator.port}/\n"
                     f"MOBILGROUP_URL='{emulator.url()}'\n"
                     "Press Ctrl+C to stop. Requests:")
            emulator.serve_forever()
        else:
            demo.say("\nThe emulator and its inbox page are closed now. To browse the messages: "
                     "mobilgroup demo --keep-open")
    finally:
        emulator.stop()
    return EXIT_OK
