"""Hostile answers through the real client: XML attacks and oversized answers from the emulator.

Each attack is delivered by the emulator's ``body`` fault as the answer to a real request, in
several encodings (the declared windows-1251, UTF-8, UTF-16 with and without a byte order mark),
and must be refused with a :class:`ProtocolError`: fast, in bounded memory, without opening the
local file it names and without connecting to the address it names. File opens and socket
connects are watched with an audit hook, and the named address is a listener that must see no
connection.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mobilgroup_backends import MobilgroupClient, errors
from mobilgroup_backends.emulator import Emulator
from tests.helpers import wait_until

if TYPE_CHECKING:
    from conftest import Trap

MARKER = "TOP-SECRET-MARKER-7d1f"
HEAD = "<response><result>OK</result><error>0</error>"

# --- watching file opens and connects -----------------------------------------------------------

_events: list[tuple[str, tuple[Any, ...]]] = []
_watching = threading.Event()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _watching.is_set() and event in ("open", "socket.connect", "urllib.Request"):
        _events.append((event, args))


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one records only when asked


@contextlib.contextmanager
def watched() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    _events.clear()
    _watching.set()
    try:
        yield _events
    finally:
        _watching.clear()


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(MARKER)
    return path


@pytest.fixture(scope="module")
def module_emulator() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


# --- the attacks --------------------------------------------------------------------------------


def billion_laughs(_: int, __: Path) -> str:
    entities = '<!ENTITY a0 "lol">' + "".join(
        f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10))
    return f"<!DOCTYPE response [{entities}]>{HEAD}<balance>1</balance><x>&a9;</x></response>"


def quadratic_blowup(_: int, __: Path) -> str:
    # 50 KB entity referenced 2,000 times: 100 MB once expanded, from an answer of 56 KB.
    return (f'<!DOCTYPE response [<!ENTITY a "{"B" * 50_000}">]>{HEAD}<balance>1</balance>'
            f"<x>{'&a;' * 2_000}</x></response>")


def xxe_local_file(_: int, path: Path) -> str:
    return (f'<!DOCTYPE response [<!ENTITY x SYSTEM "{path.as_uri()}">]>'
            f"{HEAD}<balance>&x;</balance></response>")


def xxe_network(port: int, _: Path) -> str:
    return (f'<!DOCTYPE response [<!ENTITY x SYSTEM "http://127.0.0.1:{port}/x">]>'
            f"{HEAD}<balance>&x;</balance></response>")


def external_dtd(port: int, _: Path) -> str:
    return (f'<!DOCTYPE response SYSTEM "http://127.0.0.1:{port}/evil.dtd">'
            f"{HEAD}<balance>1</balance></response>")


def public_dtd(port: int, _: Path) -> str:
    return (f'<!DOCTYPE response PUBLIC "-//EVIL//DTD//EN" "http://127.0.0.1:{port}/evil.dtd">'
            f"{HEAD}<balance>1</balance></response>")


def parameter_entity(port: int, path: Path) -> str:
    return (f'<!DOCTYPE response [<!ENTITY % file SYSTEM "{path.as_uri()}">'
            f'<!ENTITY % dtd SYSTEM "http://127.0.0.1:{port}/p.dtd">%dtd;%file;]>'
            f"{HEAD}<balance>1</balance></response>")


def xinclude(_: int, path: Path) -> str:
    return (f'{HEAD}<balance><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
            f'href="{path.as_uri()}" parse="text"/></balance></response>')


ATTACKS: dict[str, Callable[[int, Path], str]] = {
    "billion_laughs": billion_laughs,
    "quadratic_blowup": quadratic_blowup,
    "xxe_local_file": xxe_local_file,
    "xxe_network": xxe_network,
    "external_dtd": external_dtd,
    "public_dtd": public_dtd,
    "parameter_entity": parameter_entity,
    "xinclude": xinclude,
}


def encode(document: str, form: str) -> bytes:
    if form == "windows-1251":
        return f'<?xml version="1.0" encoding="windows-1251"?>\n{document}'.encode("cp1251")
    if form == "utf-8":
        return document.encode("utf-8")
    if form == "utf-16-bom":
        return f'<?xml version="1.0" encoding="utf-16"?>{document}'.encode("utf-16")
    # UTF-16 without a byte order mark: expat still detects it; no "<!" byte pair appears.
    return f'<?xml version="1.0" encoding="utf-16"?>{document}'.encode("utf-16-le")


FORMS = ("windows-1251", "utf-8", "utf-16-bom", "utf-16-no-bom")


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_xml_attack_refused(module_emulator: Emulator, trap: Trap, secret_file: Path,
                            attack: str, form: str) -> None:
    port = trap.port
    body = encode(ATTACKS[attack](port, secret_file), form)
    assert len(body) < 256 * 1024  # under the size cap: the parser, not the cap, must refuse it
    with MobilgroupClient.from_url(module_emulator.url(), retries=0, timeout=5) as client:
        client.balance()  # connect first, so that only the hostile exchange is watched
        module_emulator.faults.next("body", body=body)
        tracemalloc.start()
        started = time.perf_counter()
        try:
            with watched() as events, pytest.raises(errors.ProtocolError) as caught:
                client.balance()
            elapsed = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert elapsed < 1.0, f"{attack} took {elapsed:.2f} s to refuse"
    assert peak < 4 * 1024 * 1024 + 4 * len(body), f"{attack} peaked at {peak} bytes"
    assert MARKER not in str(caught.value)
    assert not trap.connected(), f"{attack} made a connection to the address it names"
    assert not [args for event, args in events if event == "open" and "secret" in str(args[0])]
    assert not [args for event, args in events
                if event == "socket.connect" and str(port) in str(args[1:])]
    assert not [args for event, args in events if event == "urllib.Request"]


def test_every_attack_without_the_dtd_would_do_harm(trap: Trap, secret_file: Path) -> None:
    """Control: the documents really are attacks (a permissive parser expands or fetches them),
    so the refusals above are the parser's doing, not broken test documents."""
    from xml.parsers import expat

    port = trap.port
    for name in ("billion_laughs", "quadratic_blowup"):
        parser = expat.ParserCreate()
        with pytest.raises(expat.ExpatError, match="amplification"):
            parser.Parse(encode(ATTACKS[name](port, secret_file), "utf-8"), True)
    fetched: list[str] = []
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_ALWAYS)

    def external(context: str | None, base: str | None, system_id: str | None,
                 public_id: str | None) -> int:
        fetched.append(str(system_id))
        return 1

    parser.ExternalEntityRefHandler = external
    for name in ("xxe_local_file", "xxe_network", "external_dtd", "parameter_entity"):
        with contextlib.suppress(expat.ExpatError):
            parser = expat.ParserCreate()
            parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_ALWAYS)
            parser.ExternalEntityRefHandler = external
            parser.Parse(encode(ATTACKS[name](port, secret_file), "utf-8"), True)
    assert any(secret_file.as_uri() in url for url in fetched)
    assert any(f"127.0.0.1:{port}" in url for url in fetched)


def test_hostile_answer_on_every_retry_is_refused_in_bounded_time(
        module_emulator: Emulator, trap: Trap, secret_file: Path) -> None:
    body = encode(billion_laughs(0, secret_file), "utf-16-no-bom")
    with MobilgroupClient.from_url(module_emulator.url(), retries=3, backoff=0.001) as client:
        module_emulator.faults.next("body", 4, body=body)
        started = time.perf_counter()
        with pytest.raises(errors.ProtocolError, match="hostile"):
            client.balance()
        assert time.perf_counter() - started < 2
        assert client.balance() > 0  # the next, clean answer is read normally


# --- oversized --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [300 * 1024 * 1024, 256 * 1024 + 1])
def test_oversized_answer_refused_without_reading_it(module_emulator: Emulator, size: int) -> None:
    with MobilgroupClient.from_url(module_emulator.url(), retries=0, timeout=5) as client:
        client.balance()
        module_emulator.faults.next("oversized", size=size)
        tracemalloc.start()
        started = time.perf_counter()
        try:
            with pytest.raises(errors.ProtocolError, match=r"bytes refused|refused after \d+ bytes"):
                client.balance()
            elapsed = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert elapsed < 1.0
        assert peak < 2 * 1024 * 1024
        # The emulator stops streaming once the client has hung up.
        assert wait_until(lambda: module_emulator.open_connections <= 1)
        assert client.balance() > 0  # and the client still works afterwards
    assert module_emulator.errors == []
