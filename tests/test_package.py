"""The package as users install and import it: light imports, public names, entry points."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import mobilgroup_backends


def test_import_pulls_in_no_framework() -> None:
    # The package, the pytest plugin every test run of a user's project loads, and the emulator.
    code = ("import sys, mobilgroup_backends, mobilgroup_backends.emulator.pytest_plugin, "
            "mobilgroup_backends.emulator; "
            "print(sorted(m for m in ('django', 'apprise', 'requests') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


# What `mobilgroup --help` and `mobilgroup emulator` must not import: the HTTP client and the
# hostile-XML parser cost most of the command's start-up, and neither is needed to answer.
HEAVY = ("requests", "urllib3", "defusedxml", "django", "apprise")

_UNTIL_SERVING = """
import _thread, io, sys, threading
serving = threading.Event()

class Watch(io.StringIO):
    def write(self, text):
        if "Press Ctrl+C" in text:
            serving.set()
        return super().write(text)

sys.stdout = Watch()
threading.Thread(target=lambda: serving.wait(30) and _thread.interrupt_main(), daemon=True).start()
"""


@pytest.mark.parametrize("command", [
    pytest.param("try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n", id="help"),
    pytest.param(_UNTIL_SERVING + "main(['emulator', '--port', '0', '--quiet'])\n", id="emulator"),
])
def test_the_command_starts_without_the_http_stack(command: str) -> None:
    code = ("import sys\nfrom mobilgroup_backends.cli import main\n" + command +
            f"sys.__stdout__.write(repr(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip().endswith("[]"), done.stdout


def test_every_public_name_resolves() -> None:
    for name in mobilgroup_backends.__all__:
        assert getattr(mobilgroup_backends, name) is not None
    assert set(mobilgroup_backends.__all__) <= set(dir(mobilgroup_backends))


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        mobilgroup_backends.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_version_and_entry_points() -> None:
    assert importlib.metadata.version("mobilgroup-backends") == mobilgroup_backends.__version__
    entry_points = importlib.metadata.entry_points()
    scripts = {ep.name: ep.value for ep in entry_points.select(group="console_scripts")}
    assert scripts["mobilgroup"] == "mobilgroup_backends.cli:main"
    plugins = {ep.name: ep.value for ep in entry_points.select(group="pytest11")}
    assert plugins["mobilgroup"] == "mobilgroup_backends.emulator.pytest_plugin"
