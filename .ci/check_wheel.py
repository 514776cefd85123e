"""Check that a wheel holds every file of the package: modules, migrations, templates, static
files, py.typed. Usage: ``python .ci/check_wheel.py dist/NAME.whl``."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

PACKAGE = "mobilgroup_backends"


def package_files() -> set[str]:
    """The package's files in the source tree, without compiled byte code."""
    return {path.as_posix() for path in Path(PACKAGE).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
            and path.suffix not in (".pyc", ".pyo")}


def main(wheel: str) -> int:
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    expected = package_files()
    missing = sorted(expected - shipped)
    if not expected:
        print(f"no files of {PACKAGE} found: run from the repository's root", file=sys.stderr)
        return 1
    if missing:
        print(f"{Path(wheel).name} lacks {len(missing)} file(s) of the package:", file=sys.stderr)
        for name in missing:
            print(f"  {name}", file=sys.stderr)
        return 1
    print(f"{Path(wheel).name}: all {len(expected)} files of {PACKAGE} are in the wheel")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
