"""Keep-alive over TLS (MobilgroupClient) against a new TLS connection per request (the way the
gateway's PHP example talks: open, handshake, one HTTP/1.0 POST, read to the end, close).

The emulator serves HTTPS from its own process, with a certificate issued at start-up by a test CA
(trustme); both clients verify it against that CA. Target: keep-alive >= 3x.

Both an ECDSA (P-256) and an RSA (2048-bit) server certificate are measured: the handshake's cost,
and so the ratio, depends on the key type. On loopback a new connection costs no round trips;
over a real network each one adds at least two (TCP, then TLS 1.3), so the ratio only grows.

Each key type gets one emulator; in every round both ways are measured back to back (keep-alive
over the client's one connection, then a new connection per request), and the figure is the
median of the per-round ratios with their range (``bench/_ratio.py``).

Run: ``python bench/tls_keepalive.py [-n 150] [--per-connection 50] [--rounds 15]``.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import socket
import ssl
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from urllib.parse import urlsplit

import trustme
from _ratio import Rounds, measure

from mobilgroup_backends import MobilgroupClient, protocol

USER_ID, LOGIN, PASSWORD = "1000", "bench", "bench-password"
TIME_LIMIT = 30.0  # seconds per measurement, whatever -n says


def _serve(cert_file: str, key_file: str, pipe: Connection) -> None:
    """The child process: an HTTPS emulator until the parent says stop (or 10 minutes pass)."""
    from mobilgroup_backends.emulator import Emulator

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    with Emulator([f"{USER_ID}:{LOGIN}:{PASSWORD}:1000000000"], ssl_context=context,
                  history_limit=1000) as emulator:
        pipe.send(emulator.endpoint)
        pipe.poll(600)


def php_style(endpoint: str, context: ssl.SSLContext, body: bytes) -> bytes:
    """One request on its own TLS connection, HTTP/1.0, the answer read until the server closes."""
    parts = urlsplit(endpoint)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    head = (f"POST {parts.path} HTTP/1.0\r\nHost: {host}\r\nContent-type: application/xml\r\n"
            f"Content-length: {len(body)}\r\n\r\n").encode("ascii")
    with socket.create_connection((host, port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(head + body + b"\r\n\r\n")
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    status, _, rest = answer.partition(b"\r\n")
    if b" 200 " not in status:
        raise RuntimeError(f"unexpected answer {status!r}")
    return rest.partition(b"\r\n\r\n")[2]


@contextlib.contextmanager
def https_emulator(key_type: trustme.KeyType) -> Iterator[tuple[str, str]]:
    """An HTTPS emulator in its own process with a certificate of ``key_type``: its endpoint and
    the CA file that verifies it."""
    ca = trustme.CA(key_type=key_type)
    leaf = ca.issue_cert("127.0.0.1", "localhost", key_type=key_type)
    with tempfile.TemporaryDirectory() as folder:
        ca_file, cert_file, key_file = (str(Path(folder) / name)
                                        for name in ("ca.pem", "cert.pem", "key.pem"))
        ca.cert_pem.write_to_path(ca_file)
        leaf.cert_chain_pems[0].write_to_path(cert_file)
        for pem in leaf.cert_chain_pems[1:]:
            pem.write_to_path(cert_file, append=True)
        leaf.private_key_pem.write_to_path(key_file)
        parent, child = multiprocessing.Pipe()
        process = multiprocessing.Process(target=_serve, args=(cert_file, key_file, child),
                                          daemon=True)
        process.start()
        try:
            if not parent.poll(30):
                raise RuntimeError("the emulator did not start")
            yield parent.recv(), ca_file
        finally:
            parent.send("stop")
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(10)


def compare(key_type: trustme.KeyType, sends: int, per_connection: int, rounds: int) -> Rounds:
    """Sends per second over keep-alive and with a new connection per request, in rounds."""
    with https_emulator(key_type) as (endpoint, ca_file), \
            MobilgroupClient(USER_ID, LOGIN, PASSWORD, endpoint=endpoint,
                             ca_bundle=ca_file) as client:
        credentials = protocol.Credentials(USER_ID, LOGIN, PASSWORD)
        context = ssl.create_default_context(cafile=ca_file)
        client.balance()  # the one handshake, outside the measurement

        def keep_alive() -> float:
            started, done = time.perf_counter(), 0
            while done < sends and time.perf_counter() - started < TIME_LIMIT:
                client.send("79039587454", f"keep-alive {done}")
                done += 1
            return done / (time.perf_counter() - started)

        def fresh() -> float:
            started, done = time.perf_counter(), 0
            while done < per_connection and time.perf_counter() - started < TIME_LIMIT:
                body = protocol.build_send(credentials, phones=("79039587454",),
                                           text=f"new connection {done}",
                                           request_id=protocol.new_request_id())
                protocol.parse_send(php_style(endpoint, context, body))
                done += 1
            return done / (time.perf_counter() - started)

        return measure({"keep-alive": keep_alive, "fresh": fresh}, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=150, help="sends over keep-alive per round")
    parser.add_argument("--per-connection", type=int, default=50,
                        help="sends with a new TLS connection each, per round")
    parser.add_argument("--rounds", type=int, default=15,
                        help="interleaved rounds per key type; the median of per-round ratios")
    args = parser.parse_args()
    print(f"bench/tls_keepalive.py -n {args.n} --per-connection {args.per_connection} "
          f"--rounds {args.rounds}")
    for key_type in (trustme.KeyType.ECDSA, trustme.KeyType.RSA):
        rounds = compare(key_type, args.n, args.per_connection, args.rounds)
        name = key_type.name
        print(f"{name:5} keep-alive over TLS (MobilgroupClient):      "
              f"{rounds.median('keep-alive'):>8.1f} sends/s (median of rounds)")
        print(f"{name:5} new TLS connection per request (PHP style):  "
              f"{rounds.median('fresh'):>8.1f} sends/s (median of rounds)")
        print(f"{name:5} ratio = {rounds.describe('keep-alive', 'fresh')}  (target >= 3x)")


if __name__ == "__main__":
    main()
