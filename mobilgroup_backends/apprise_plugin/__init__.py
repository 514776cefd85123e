"""Make ``mobilgroup://`` known to the stock ``apprise`` command line.

Apprise 2.x does not discover plugins from installed packages: its command line imports the
Python files found in its plugin folders. Two ways to point it at this package:

- :func:`install_loader` writes a small loader file into the user's Apprise plugin folder
  (``mobilgroup apprise install [FOLDER]``);
- :func:`plugin_path` is a folder inside the installed package that holds the same loader, to
  give to ``APPRISE_PLUGIN_PATH`` or ``apprise --plugin-path`` (``mobilgroup apprise path``).

This module does not import Apprise, so the ``mobilgroup`` command can use it cheaply.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

__all__ = ["LOADER_NAME", "default_plugin_folder", "install_loader", "loader_source", "plugin_path"]

#: The loader's file name, in :func:`plugin_path` and in the folders it is installed into.
LOADER_NAME = "mobilgroup.py"

# Found in every version of the loader: a file that has it is ours to replace.
_MARKER = "import mobilgroup_backends.apprise"

# The per-user plugin folder the apprise command scans, as it spells it (see apprise.cli's
# DEFAULT_PLUGIN_PATHS; Apprise expands "~" and "%VAR%" itself and ignores XDG_CONFIG_HOME).
_POSIX_FOLDER = "~/.config/apprise/plugins"
_WINDOWS_FOLDER = "%APPDATA%\\Apprise\\plugins"


def plugin_path() -> Path:
    """The folder inside the installed package that holds the loader.

    ``APPRISE_PLUGIN_PATH=$(mobilgroup apprise path) apprise ...`` makes ``mobilgroup://`` work
    without writing anything into the user's home.
    """
    return Path(__file__).resolve().parent / "plugins"


def loader_source() -> str:
    """The loader's text, as :func:`install_loader` writes it."""
    return (plugin_path() / LOADER_NAME).read_text(encoding="utf-8")


def default_plugin_folder() -> Path:
    """The per-user folder the ``apprise`` command scans for plugins.

    ``~/.config/apprise/plugins`` (``%APPDATA%\\Apprise\\plugins`` on Windows), exactly as the
    ``apprise`` command resolves it.
    """
    spelled = _WINDOWS_FOLDER if sys.platform == "win32" else _POSIX_FOLDER
    return Path(os.path.expandvars(os.path.expanduser(spelled)))


def install_loader(folder: str | os.PathLike[str] | None = None, *, force: bool = False) -> Path:
    """Write the loader into ``folder`` (default :func:`default_plugin_folder`); return its path.

    Idempotent: the folder is created when missing, an up-to-date loader is left untouched and an
    older one is replaced. A ``mobilgroup.py`` there that is not this package's loader is kept,
    and ``FileExistsError`` says so, unless ``force`` is given.
    """
    target_dir = Path(folder).expanduser() if folder is not None else default_plugin_folder()
    if target_dir.exists() and not target_dir.is_dir():
        raise NotADirectoryError(f"{target_dir} is not a folder; give Apprise's plugin folder")
    target = target_dir / LOADER_NAME
    source = loader_source()
    if target.is_file():
        try:
            current = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            current = ""
        if current == source:
            return target
        if _MARKER not in current and not force:
            raise FileExistsError(
                f"{target} exists and is not the mobilgroup-backends loader; "
                f"move it away, or install into another folder")
    target_dir.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed over it: apprise never imports half a file.
    fd, tmp = tempfile.mkstemp(prefix=".mobilgroup-", suffix=".tmp", dir=target_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(source)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
