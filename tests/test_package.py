"""The package as users install and import it: light imports, public names, entry points."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import mobilgroup_backends


def test_import_pulls_in_no_framework() -> None:
    # The package, the pytest plugin every test run of a user's project loads, and the emulator.
    code = ("import sys, mobilgroup_backends, mobilgroup_backends.emulator.pytest_plugin, "
            "mobilgroup_backends.emulator; "
            "print(sorted(m for m in ('django', 'apprise', 'requests') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


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
