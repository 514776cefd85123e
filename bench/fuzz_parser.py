"""A bounded fuzzing run of the response parser: only ProtocolError or GatewayError may come out.

With atheris installed (``pip install atheris``; coverage-guided, libFuzzer) the run starts from
a tiny seed corpus (the gateway's example answers in ``tests/data/``, copied to a temporary
folder so the repository is never written) and a dictionary of XML and gateway tokens. Without
atheris, hypothesis runs the same check at a high example count, from random bytes and from
mutations of the same seeds. Either way the run is bounded by ``--runs`` and ``--seconds``.

Neither tool is a dependency of the package: atheris is optional here, hypothesis is in the
``test`` extra.

Run: ``python bench/fuzz_parser.py [--runs 200000] [--seconds 60] [--engine auto|atheris|hypothesis]``.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
TOKENS = [
    "<?xml version=\"1.0\" encoding=\"windows-1251\"?>", "encoding=\"utf-16\"", "<!DOCTYPE",
    "<!ENTITY", "SYSTEM", "PUBLIC", "%", "&", ";", "<![CDATA[", "]]>", "<!--", "-->",
    "<response>", "</response>", "</response >", "<result>", "</result>", "OK", "ERROR",
    "<error>", "</error>", "<id>", "</ id>", "</id>", "<status>", "</status>", "<balance>",
    "</balance>", "<extended>", "</extended>", "<dest>", "</dest>", "<phone>", "</phone>",
    "<time>", "</time>", "2007-03-12 23:24", "\\x00", "\\xff\\xfe", "&#x0;", "&lt;",
]


def seeds() -> list[bytes]:
    return [path.read_bytes() for path in sorted(DATA.glob("*response*.xml"))]


def check(data: bytes) -> None:
    """The property: any bytes in, a typed value or a typed error out."""
    from mobilgroup_backends import errors, protocol

    for parse in (protocol.parse_send, protocol.parse_balance,
                  lambda d: protocol.parse_status(d, 1)):
        with contextlib.suppress(errors.ProtocolError, errors.GatewayError):
            parse(data)


# --- atheris ----------------------------------------------------------------------------------


def atheris_child(argv: list[str]) -> None:
    """Runs under libFuzzer, which ends the process itself (an uncaught exception is a crash)."""
    import atheris

    with atheris.instrument_imports():
        import defusedxml.ElementTree  # noqa: F401

        from mobilgroup_backends import protocol  # noqa: F401

    def one(data: bytes) -> None:
        check(data)

    atheris.Setup(argv, one)
    atheris.Fuzz()


def run_atheris(runs: int, seconds: int) -> int:
    with tempfile.TemporaryDirectory() as folder:
        corpus = Path(folder) / "corpus"
        corpus.mkdir()
        for i, seed in enumerate(seeds()):
            (corpus / f"seed-{i}").write_bytes(seed)
        dictionary = Path(folder) / "xml.dict"
        dictionary.write_text("".join(f'"{token.replace(chr(34), chr(92) + chr(34))}"\n'
                                      for token in TOKENS))
        command = [sys.executable, __file__, "--atheris-child", f"-runs={runs}",
                   f"-max_total_time={seconds}", "-max_len=4096", "-rss_limit_mb=1024",
                   "-timeout=5", f"-dict={dictionary}", f"-artifact_prefix={folder}/",
                   "-print_final_stats=1", str(corpus)]
        started = time.perf_counter()
        child = subprocess.run(command, capture_output=True, text=True,
                               timeout=seconds + 120, check=False)
        elapsed = time.perf_counter() - started
        log = child.stderr
        done = re.search(r"Done (\d+) runs in (\d+) second", log)
        cov = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", log)
        crashes = sorted(p.name for p in Path(folder).iterdir() if p.name.startswith("crash-"))
        executed = int(done.group(1)) if done else 0
        print(f"engine: atheris (libFuzzer), seeds: {len(seeds())}, dictionary tokens: {len(TOKENS)}")
        print(f"inputs run: {executed} in {elapsed:.1f} s ({executed / elapsed:.0f}/s)")
        if cov:
            print(f"coverage: {cov[-1][0]} edges, {cov[-1][1]} features, "
                  f"corpus grew to {cov[-1][2]} inputs")
        print(f"crashes (an exception other than ProtocolError/GatewayError): {len(crashes)}")
        if child.returncode != 0 or crashes:
            print(log[-4000:])
            return 1
        return 0


# --- hypothesis -------------------------------------------------------------------------------


#: Examples per Hypothesis call: the run checks its time and count bounds between calls, so it
#: overshoots --seconds by one chunk at most (well under a second here).
CHUNK = 100


def run_hypothesis(runs: int, seconds: int) -> int:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    corpus = seeds()
    count = [0]

    def random_bytes(data: bytes) -> None:
        count[0] += 1
        check(data)

    def mutations(seed: bytes, edits: list[tuple[int, str, bool]]) -> None:
        data = bytearray(seed)
        for at, token, replace in edits:
            at %= len(data) + 1
            chunk = token.encode("latin-1", "replace")
            data[at:at + (len(chunk) if replace else 0)] = chunk
        count[0] += 1
        check(bytes(data))

    strategies = {
        random_bytes: (st.binary(max_size=4096),),
        mutations: (st.sampled_from(corpus),
                    st.lists(st.tuples(st.integers(0, 4096),
                                       st.sampled_from([*TOKENS, "\x00", "<"]), st.booleans()),
                             max_size=8)),
    }
    started = time.monotonic()
    failed = 0
    # Each property gets half the inputs and half the time; it runs in chunks of CHUNK examples
    # (fresh random ones each time: no database), checking both bounds between chunks.
    for share, (test, arguments) in enumerate(strategies.items(), start=1):
        until, most = started + seconds * share / len(strategies), runs * share // len(strategies)
        while count[0] < most and time.monotonic() < until:
            options = settings(max_examples=min(CHUNK, most - count[0]), deadline=None,
                               database=None, suppress_health_check=list(HealthCheck))
            try:
                options(given(*arguments)(test))()
            except Exception as exc:  # a counterexample: report it, keep the exit code
                failed += 1
                print(f"FAILED {test.__name__}: {type(exc).__name__}: {exc}")
                break
    elapsed = time.monotonic() - started
    print(f"engine: hypothesis, seeds: {len(corpus)}")
    print(f"inputs run: {count[0]} in {elapsed:.1f} s ({count[0] / elapsed:.0f}/s), "
          f"bounds: {runs} inputs, {seconds} s")
    print(f"failures (an exception other than ProtocolError/GatewayError): {failed}")
    return 1 if failed else 0


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--atheris-child":
        atheris_child([sys.argv[0], *sys.argv[2:]])
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200_000, help="inputs at most")
    parser.add_argument("--seconds", type=int, default=60, help="wall time at most")
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    args = parser.parse_args()
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if _has_atheris() else "hypothesis"
    print(f"bench/fuzz_parser.py --runs {args.runs} --seconds {args.seconds} --engine {engine}")
    runner = run_atheris if engine == "atheris" else run_hypothesis
    raise SystemExit(runner(args.runs, args.seconds))


def _has_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
