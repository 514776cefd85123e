"""Microseconds to build one send request and to parse answers, next to bare ElementTree.

The baseline does the least that could work: ``ElementTree`` building the same document without
any checks, and ``ElementTree.fromstring`` (not hardened, no typed result) on the same answers.
Target: ours within 2x of it. Run: ``python bench/protocol.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from collections.abc import Callable
from xml.etree import ElementTree

from mobilgroup_backends import protocol
from mobilgroup_backends.protocol import Credentials

CREDS = Credentials("1000", "demo", "demo-password")
PHONES = ("79039587454", "79236411579")
TEXT = "Привет! Ваш код подтверждения: 4521"

SEND_OK = (b'<?xml version="1.0" encoding="windows-1251"?>\n<response>\n<result>OK</result>\n'
           b"<error>0</error>\n<id>123456789012345678</id>\n</response>\n")
STATUS = (b'<?xml version="1.0" encoding="windows-1251"?>\n<response>\n<result>OK</result>\n'
          b"<error>0</error>\n<status>4</status>\n<extended>\n"
          + b"".join(b"<dest><phone>7903958745%d</phone><time>2026-11-24 15:46</time>"
                     b"<status>1</status></dest>\n" % i for i in range(5))
          + b"</extended>\n<id>123456789012345678</id>\n</response>\n")


def ours_build() -> bytes:
    # What client.send does before the network: every check, then the document.
    phones = protocol.normalize_phones(PHONES)
    text = protocol.check_text(TEXT)
    return protocol.build_send(CREDS, phones=phones, text=text, request_id=123456789012345678,
                               sender=protocol.check_sender("Shop"))


def etree_build() -> bytes:
    root = ElementTree.Element("request")
    for tag, value in (("user_id", CREDS.user_id), ("user", CREDS.login),
                       ("pwd", CREDS.password), ("command", "send"),
                       ("phone", ",".join(PHONES)), ("sender", "Shop"), ("message", TEXT),
                       ("id", "123456789012345678")):
        ElementTree.SubElement(root, tag).text = value
    return ElementTree.tostring(root, encoding="windows-1251", xml_declaration=True)


def ours_parse_send() -> object:
    return protocol.parse_send(SEND_OK)


def etree_parse_send() -> object:
    root = ElementTree.fromstring(SEND_OK)
    return root.findtext("result"), root.findtext("error"), root.findtext("id")


def ours_parse_status() -> object:
    return protocol.parse_status(STATUS, 123456789012345678)


def etree_parse_status() -> object:
    root = ElementTree.fromstring(STATUS)
    return [(d.findtext("phone"), d.findtext("time"), d.findtext("status"))
            for d in root.iter("dest")]


def microseconds(func: Callable[[], object], rounds: int) -> float:
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    return statistics.median(timer.repeat(repeat=rounds, number=number)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"{'operation':<16} {'ours µs':>9} {'ElementTree µs':>15} {'ratio':>7}  (target <= 2.0)")
    worst = 0.0
    for name, ours, base in (("build send", ours_build, etree_build),
                             ("parse send", ours_parse_send, etree_parse_send),
                             ("parse status", ours_parse_status, etree_parse_status)):
        a, b = microseconds(ours, args.rounds), microseconds(base, args.rounds)
        worst = max(worst, a / b)
        print(f"{name:<16} {a:>9.2f} {b:>15.2f} {a / b:>7.2f}")
    print(f"worst ratio {worst:.2f}: {'meets' if worst <= 2.0 else 'MISSES'} the target")


if __name__ == "__main__":
    main()
