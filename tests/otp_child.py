"""One process of a fleet asking for one-time codes through the guard, with a cache shared by
the fleet (a real Redis). Run by tests/test_otp_guard.py as ``python -m tests.otp_child``.

Arguments: a folder, this child's index, and the phones to ask codes for (in order). The child
waits for ``go`` in the folder (so that the fleet starts together), then writes one JSON line:
how many codes were sent and refused, and any exception the framework would not expect.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(folder: str, index: str, *phones: str) -> int:
    import django

    django.setup()
    from mobilgroup_backends.django.codes import send_code
    from mobilgroup_backends.django.guard import CodeRefused

    base = Path(folder)
    (base / f"ready-{index}").touch()
    deadline = time.monotonic() + 30
    while not (base / "go").exists():
        if time.monotonic() > deadline:
            return 3
        time.sleep(0.005)
    sent = refused = 0
    unexpected: list[str] = []
    for phone in phones:
        try:
            send_code(phone, "123456", minutes=5, purpose="fleet")
            sent += 1
        except CodeRefused:
            refused += 1
        except Exception as exc:
            unexpected.append(f"{type(exc).__name__}: {exc}")
    (base / f"result-{index}").write_text(json.dumps(
        {"sent": sent, "refused": refused, "unexpected": unexpected}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
