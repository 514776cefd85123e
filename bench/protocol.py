"""Microseconds to build one send request and to parse answers, next to the least that works.

Baselines, each doing less than ours and measured in the same rounds:

- build: an f-string template with ``xml.sax.saxutils.escape`` (the fastest correct way to write
  the document, no checks at all), and ``ElementTree`` building the same document;
- parse: ``ElementTree.fromstring`` (not hardened, no typed result) on the same answers.

Ours validates and normalises every field before building, and parses into typed values. The
status answers cycle through 2,000 documents whose recipients' times all differ, so the parser's
time cache is cold, as it is for a real report. Ratios are medians of per-round ratios
(``bench/_ratio.py``). Target: ours within 2x of ElementTree for building and parsing; the
template's ratio says what the checks cost. Run: ``python bench/protocol.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import itertools
import time
import timeit
from collections.abc import Callable
from datetime import datetime, timedelta
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from _ratio import Rounds, measure

from mobilgroup_backends import protocol
from mobilgroup_backends.protocol import Credentials

CREDS = Credentials("1000", "demo", "demo-password")
PHONES = ("79039587454", "79236411579")
TEXT = "Привет! Ваш код подтверждения: 4521"

SEND_OK = (b'<?xml version="1.0" encoding="windows-1251"?>\n<response>\n<result>OK</result>\n'
           b"<error>0</error>\n<id>123456789012345678</id>\n</response>\n")


def status_document(number: int) -> bytes:
    """A report with five recipients, each at a minute no other document uses."""
    first = datetime(2026, 1, 1) + timedelta(minutes=5 * number)
    dests = b"".join(b"<dest><phone>7903958745%d</phone><time>%s</time><status>1</status></dest>\n"
                     % (i, (first + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M").encode())
                     for i in range(5))
    return (b'<?xml version="1.0" encoding="windows-1251"?>\n<response>\n<result>OK</result>\n'
            b"<error>0</error>\n<status>4</status>\n<extended>\n" + dests
            + b"</extended>\n<id>123456789012345678</id>\n</response>\n")


# 2,000 documents, 10,000 distinct times: far more than the parser's cache holds.
STATUSES = [status_document(n) for n in range(2000)]
_ours_statuses = itertools.cycle(STATUSES)
_etree_statuses = itertools.cycle(STATUSES)


def ours_build() -> bytes:
    # What client.send does before the network: every check, then the document.
    phones = protocol.normalize_phones(PHONES)
    text = protocol.check_text(TEXT)
    return protocol.build_send(CREDS, phones=phones, text=text, request_id=123456789012345678,
                               sender=protocol.check_sender("Shop"))


def template_build() -> bytes:
    return (f'<?xml version="1.0" encoding="windows-1251"?>\n<request><user_id>{CREDS.user_id}'
            f"</user_id><user>{escape(CREDS.login)}</user><pwd>{escape(CREDS.password)}</pwd>"
            f"<command>send</command><phone>{','.join(PHONES)}</phone><sender>Shop</sender>"
            f"<message>{escape(TEXT)}</message><id>123456789012345678</id></request>"
            ).encode("windows-1251")


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
    return protocol.parse_status(next(_ours_statuses), 123456789012345678)


def etree_parse_status() -> object:
    root = ElementTree.fromstring(next(_etree_statuses))
    return [(d.findtext("phone"), d.findtext("time"), d.findtext("status"))
            for d in root.iter("dest")]


def per_call(func: Callable[[], object]) -> Callable[[], float]:
    """A round of ``func``: microseconds per call over enough calls to take about 0.05 s.

    Timed in this process's CPU time: everything here runs on one thread without waiting, and
    the time other processes of a shared machine take from it then stays out of the figure.
    Short rounds keep the two sides of a ratio close together in time."""
    timer = timeit.Timer(func, timer=time.process_time)
    number, _ = timer.autorange()  # at least 0.2 s
    number = max(1, number // 4)
    return lambda: timer.timeit(number) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rounds: Rounds = measure({
        "build ours": per_call(ours_build), "build template": per_call(template_build),
        "build etree": per_call(etree_build),
        "parse send ours": per_call(ours_parse_send), "parse send etree": per_call(etree_parse_send),
        "parse status ours": per_call(ours_parse_status),
        "parse status etree": per_call(etree_parse_status),
    }, args.rounds)
    print(f"{'operation':<34} {'µs (median)':>12}")
    for name in rounds.values:
        print(f"{name:<34} {rounds.median(name):>12.2f}")
    print("ratios, ours / baseline (median of per-round ratios):")
    worst = 0.0
    for label, ours, base, target in (
            ("build send / f-string template", "build ours", "build template", None),
            ("build send / ElementTree", "build ours", "build etree", 2.0),
            ("parse send / ElementTree", "parse send ours", "parse send etree", 2.0),
            ("parse status, cold cache / ElementTree", "parse status ours", "parse status etree",
             2.0)):
        note = f"(target <= {target})" if target else "(what the checks cost; no target)"
        print(f"  {label:<40} {rounds.describe(ours, base)}  {note}")
        if target:
            worst = max(worst, rounds.ratio(ours, base))
    print(f"worst targeted ratio {worst:.2f}: {'meets' if worst <= 2.0 else 'MISSES'} the target")


if __name__ == "__main__":
    main()
