"""``mobilgroup completion bash|zsh``: a shell completion script, generated from the parser.

The scripts come from `shtab <https://github.com/iterative/shtab>`_ (the ``cli`` extra), so they
always match the commands and options of the installed version.
"""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any

from ..errors import ConfigurationError
from .output import EXIT_OK

SHELLS = ("bash", "zsh")


def add_commands(commands: Any, root: argparse.ArgumentParser) -> None:
    completion = commands.add_parser(
        "completion", help="print a shell completion script (bash or zsh)",
        description="Print a completion script. Bash: add 'eval \"$(mobilgroup completion "
                    "bash)\"' to ~/.bashrc. Zsh: mobilgroup completion zsh > "
                    "\"${fpath[1]}/_mobilgroup\", then start a new shell.")
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(handler=partial(run, root))


def script(root: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of ``root`` for ``shell``."""
    try:
        import shtab
    except ImportError:
        raise ConfigurationError(
            "completion", shell, "needs the shtab package",
            "pip install 'mobilgroup-backends[cli]'") from None
    text: str = shtab.complete(root, shell=shell)
    return text


def run(root: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    print(script(root, args.shell))
    return EXIT_OK
