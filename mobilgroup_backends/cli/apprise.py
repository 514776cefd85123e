"""``mobilgroup apprise install|path``: make ``mobilgroup://`` known to the stock ``apprise`` command."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ValidationError
from .output import EXIT_OK


def add_commands(commands: Any) -> None:
    apprise = commands.add_parser("apprise", help="make mobilgroup:// known to the apprise command")
    apprise_commands = apprise.add_subparsers(title="apprise commands", metavar="ACTION")
    install = apprise_commands.add_parser(
        "install", help="write a loader into Apprise's plugin folder")
    install.add_argument("folder", nargs="?",
                         help="the plugin folder (default: Apprise's per-user plugin folder)")
    install.add_argument("--force", action="store_true",
                         help="replace a different mobilgroup.py already in that folder")
    install.set_defaults(handler=run_install)
    path = apprise_commands.add_parser(
        "path", help="print a folder to give to APPRISE_PLUGIN_PATH or --plugin-path")
    path.set_defaults(handler=run_path)


def run_install(args: argparse.Namespace) -> int:
    from ..apprise_plugin import LOADER_NAME, default_plugin_folder, install_loader, loader_source

    folder = Path(args.folder).expanduser() if args.folder else default_plugin_folder()
    try:
        before = (folder / LOADER_NAME).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        before = None
    try:
        written = install_loader(folder, force=args.force)
    except OSError as exc:  # someone else's file there, not a folder, no permission
        raise ValidationError("folder", args.folder or "(Apprise's plugin folder)",
                              exc.strerror or str(exc),
                              "give another folder, or --force to replace the file") from None
    done = "unchanged" if before == loader_source() else "wrote"
    if folder.resolve() == default_plugin_folder().resolve():
        print(f"{done} {written}; the apprise command reads this folder, so it now knows "
              f"mobilgroup:// URLs")
    else:
        print(f"{done} {written}; the apprise command does not read this folder by itself: run "
              f"it with --plugin-path {folder}, or set APPRISE_PLUGIN_PATH={folder}")
    return EXIT_OK


def run_path(args: argparse.Namespace) -> int:
    from ..apprise_plugin import plugin_path

    print(plugin_path())
    return EXIT_OK
