"""The stock ``apprise`` program, run as a subprocess in a temporary home, against the emulator.

Apprise's command line learns ``mobilgroup://`` only from its plugin folders; these tests prove
that the loader (installed, or found through ``APPRISE_PLUGIN_PATH`` / ``--plugin-path``) is
what makes it work, and that a failure shows the gateway's code but never the password.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import quote

import pytest

from mobilgroup_backends.apprise_plugin import (
    LOADER_NAME,
    default_plugin_folder,
    install_loader,
    loader_source,
    plugin_path,
)
from mobilgroup_backends.emulator import Emulator
from tests.conftest import RunCommand

pytestmark = pytest.mark.slow

PHONE = "79991234567"
PASSWORD = "demo-password"


def apprise_program() -> list[str]:
    script = Path(sys.executable).with_name("apprise")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from apprise.cli import main; sys.exit(main())"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty home for this test, and for the programs it runs."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    monkeypatch.setenv("APPDATA", str(home / "AppData" / "Roaming"))
    # Apprise ignores XDG_CONFIG_HOME for plugins; point it elsewhere to prove it.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in ("APPRISE_PLUGIN_PATH", "APPRISE_URLS", "APPRISE_CONFIG_PATH", "APPRISE_CONFIG",
                 "APPRISE_STORAGE_PATH"):
        monkeypatch.delenv(name, raising=False)
    return home


def run_apprise(*args: str, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*apprise_program(), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})}, cwd=cwd)


# --- the loader ---------------------------------------------------------------------------------


def test_default_folder_is_one_apprise_scans(home: Path) -> None:
    from apprise.cli import DEFAULT_PLUGIN_PATHS
    from apprise.utils.disk import path_decode

    assert str(default_plugin_folder()) in {path_decode(p) for p in DEFAULT_PLUGIN_PATHS}
    assert default_plugin_folder().is_relative_to(home)


def test_install_is_idempotent_and_keeps_foreign_files(home: Path, tmp_path: Path) -> None:
    written = install_loader()
    assert written == home / ".config" / "apprise" / "plugins" / LOADER_NAME
    assert written.read_text(encoding="utf-8") == loader_source()
    stamp = written.stat().st_mtime_ns
    assert install_loader() == written
    assert written.stat().st_mtime_ns == stamp  # untouched when up to date
    assert sorted(p.name for p in written.parent.iterdir()) == [LOADER_NAME]

    written.write_text("# an older loader\nimport mobilgroup_backends.apprise\n", encoding="utf-8")
    install_loader()
    assert written.read_text(encoding="utf-8") == loader_source()  # ours: replaced

    other = tmp_path / "other"
    other.mkdir()
    (other / LOADER_NAME).write_text("# somebody else's plugin\n", encoding="utf-8")
    with pytest.raises(FileExistsError, match="not the mobilgroup-backends loader"):
        install_loader(other)
    assert (other / LOADER_NAME).read_text(encoding="utf-8") == "# somebody else's plugin\n"
    assert install_loader(str(other), force=True).read_text(encoding="utf-8") == loader_source()


def test_plugin_path_holds_only_the_loader() -> None:
    folder = plugin_path()
    assert folder.is_dir() and not (folder / "__init__.py").exists()
    assert [p.name for p in folder.glob("*.py")] == [LOADER_NAME]


# --- the apprise program ------------------------------------------------------------------------


def test_apprise_without_a_loader_does_not_know_the_schema(home: Path,
                                                           mobilgroup_emulator: Emulator) -> None:
    done = run_apprise("-b", "disk full", mobilgroup_emulator.url(PHONE))
    assert done.returncode != 0
    assert not mobilgroup_emulator.outbox


def test_apprise_after_install(home: Path, mobilgroup_emulator: Emulator) -> None:
    install_loader()
    done = run_apprise("-vv", "-t", "db-1", "-b", "disk full", mobilgroup_emulator.url(PHONE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert mobilgroup_emulator.outbox.wait_for(1)
    [message] = mobilgroup_emulator.outbox
    assert (message.phones, message.text) == ((PHONE,), "db-1\ndisk full")
    assert "Sent Mobilgroup SMS" in done.stdout + done.stderr


def test_apprise_with_the_plugin_path_variable(home: Path, mobilgroup_emulator: Emulator) -> None:
    done = run_apprise("-b", "via APPRISE_PLUGIN_PATH", mobilgroup_emulator.url(PHONE),
                       env={"APPRISE_PLUGIN_PATH": str(plugin_path())})
    assert done.returncode == 0, done.stdout + done.stderr
    assert [m.text for m in mobilgroup_emulator.outbox] == ["via APPRISE_PLUGIN_PATH"]


def test_apprise_details_lists_the_plugin(home: Path) -> None:
    install_loader()
    done = run_apprise("--details")
    assert done.returncode == 0, done.stderr
    assert "Mobilgroup SMS" in done.stdout
    assert "mobilgroup://{user}:{password}@{user_id}/{targets}" in done.stdout


def test_apprise_config_file(home: Path, tmp_path: Path, mobilgroup_emulator: Emulator) -> None:
    install_loader()
    config = tmp_path / "alerts.yml"
    config.write_text(textwrap.dedent(f"""\
        urls:
          - {mobilgroup_emulator.url(PHONE, sender="Ops")}:
            - tag: oncall
          - {mobilgroup_emulator.url("79990000009")}:
            - tag: dev
        """), encoding="utf-8")
    done = run_apprise("--config", str(config), "--tag", "oncall", "-b", "from a config file")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [(m.phones, m.sender, m.text) for m in mobilgroup_emulator.outbox] == [
        ((PHONE,), "Ops", "from a config file")]


def test_apprise_failure_names_the_code_not_the_password(home: Path,
                                                         mobilgroup_emulator: Emulator) -> None:
    install_loader()
    mobilgroup_emulator.accounts["1000"].blocked = True
    done = run_apprise("-vv", "-b", "blocked", mobilgroup_emulator.url(PHONE))
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert "error 5: the client account is blocked" in output
    assert PASSWORD not in output


@pytest.mark.parametrize("mistake", ["password", "url"])
def test_a_refused_notification_shows_without_verbose(home: Path, mobilgroup_emulator: Emulator,
                                                      mistake: str) -> None:
    """The apprise command prints only errors unless given -v: a notification that did not go
    out must still say why."""
    install_loader()
    url = mobilgroup_emulator.url(PHONE)
    if mistake == "password":
        url = url.replace(quote(mobilgroup_emulator.account.password, safe=""), "WRONG")
        expected = "error 4: wrong login and/or password"
    else:
        url = re.sub(r"@\d+", "@12ab", url, count=1)
        expected = "the client ID after '@' must be digits"
    done = run_apprise("-b", "disk full", url)
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert expected in output and "ERROR" in output, output
    assert not mobilgroup_emulator.outbox


def test_loader_warns_when_the_package_is_missing(home: Path, tmp_path: Path) -> None:
    folder = install_loader(tmp_path / "plugins").parent
    # A Python that cannot import mobilgroup_backends (isolated mode, no site-packages of ours):
    # the loader must not break Apprise, only say what is wrong.
    code = textwrap.dedent(f"""
        import sys
        sys.modules["mobilgroup_backends"] = None  # as if not installed
        from apprise.cli import main
        sys.argv = ["apprise", "--plugin-path", {str(folder)!r}, "-vv", "--details"]
        main()
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "mobilgroup:// URLs are unavailable" in output
    assert "Mobilgroup SMS" not in output


# --- the mobilgroup command ---------------------------------------------------------------------


def test_mobilgroup_apprise_install_then_apprise_with_the_plugin_path_option(
        home: Path, tmp_path: Path, mobilgroup_emulator: Emulator,
        mobilgroup_command: RunCommand) -> None:
    folder = tmp_path / "custom plugins"
    done = mobilgroup_command("apprise", "install", str(folder))
    assert done.returncode == 0, done.stderr
    assert (folder / LOADER_NAME).read_text(encoding="utf-8") == loader_source()
    assert str(folder / LOADER_NAME) in done.stdout
    assert mobilgroup_command("apprise", "install", str(folder)).returncode == 0  # again: fine

    done = mobilgroup_command("apprise", "install")  # the default folder, in the temporary home
    assert done.returncode == 0, done.stderr
    assert (default_plugin_folder() / LOADER_NAME).is_file()

    run = run_apprise("--plugin-path", str(folder), "-b", "installed by the command",
                      mobilgroup_emulator.url(PHONE, "79990000001"))
    assert run.returncode == 0, run.stdout + run.stderr
    [message] = mobilgroup_emulator.outbox
    assert (message.phones, message.text) == ((PHONE, "79990000001"), "installed by the command")


def test_mobilgroup_apprise_path(home: Path, mobilgroup_command: RunCommand) -> None:
    done = mobilgroup_command("apprise", "path")
    assert done.returncode == 0, done.stderr
    # The folder test_apprise_with_the_plugin_path_variable gives the apprise program.
    assert Path(done.stdout.strip()) == plugin_path()
