"""One process of a fleet logging a storm through ``SmsHandler`` with a shared Redis budget.

Run by tests/test_logging_fleet.py in forked and spawned processes (a module, so that a spawned
child can import it). Each child checks its own promises (the app never blocks) and reports
through its exit code and one JSON line in its result file.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

#: No single logging call may take longer than this, whatever Redis or the gateway do. The
#: gateway answers after GATEWAY_LATENCY and a dead Redis times out after half a second: a call
#: that waited for either would show; scheduling noise on a busy machine should not.
MAX_CALL_SECONDS = 0.4
GATEWAY_LATENCY = 1.0


def _wait_for(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def storm(index: int, url: str, budget: str, folder: str, records: int, max_sms: int,
          kill_redis: bool) -> None:
    """Log ``records`` distinct CRITICAL records; wait until every child is done deciding (or,
    with ``kill_redis``, go on logging after the parent killed Redis); close; report."""
    stderr_path = Path(folder) / f"stderr-{index}"
    sys.stderr = stderr_path.open("w", buffering=1)
    from mobilgroup_backends.logging import SmsHandler

    handler = SmsHandler(url=url, budget=budget, max_sms=max_sms, per_seconds=300,
                         dedupe_seconds=0, flush_timeout=10)
    log = logging.getLogger(f"fleet.{index}")
    log.propagate = False
    log.addHandler(handler)
    slowest = 0.0
    started = time.monotonic()

    def alert(text: str) -> None:
        nonlocal slowest
        before = time.perf_counter()
        log.critical(text)
        slowest = max(slowest, time.perf_counter() - before)

    base = Path(folder)
    for n in range(records):
        alert(f"storm {index}.{n}")
        if kill_redis:
            time.sleep(0.002)
    handler.flush()
    (base / f"stormed-{index}").touch()
    if kill_redis:
        # Go on while the shared budget is gone: nothing may block, and alerts still go out.
        assert _wait_for(base / "redis-killed", 30), "the parent never killed Redis"
        for n in range(records):
            alert(f"after-kill {index}.{n}")
    else:
        # Close only once every process made its decisions: then exactly one summary is due.
        assert _wait_for(base / "all-stormed", 30), "the others never finished"
    storm_seconds = time.monotonic() - started
    handler.flush()
    before_close = time.monotonic()
    handler.close()
    result = {"slowest": slowest, "storm_seconds": storm_seconds,
              "close_seconds": time.monotonic() - before_close, "stats": vars(handler.stats)}
    (base / f"result-{index}.json").write_text(json.dumps(result))
    sys.stderr.flush()
