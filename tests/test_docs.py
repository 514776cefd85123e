"""The README and docs/ agree with the package: the versions they claim are the ones
pyproject.toml declares and CI runs, the dependencies they name are the ones it installs, and
every link between them leads somewhere."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli where tomllib is missing
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        data: dict[str, Any] = tomllib.load(handle)["project"]
    return data


def classified(project: dict[str, Any], prefix: str) -> list[str]:
    versions = [c.removeprefix(prefix) for c in project["classifiers"] if c.startswith(prefix)]
    return [v for v in versions if re.fullmatch(r"\d+\.\d+", v)]


def names(requirements: list[str]) -> set[str]:
    return {Requirement(line).name.lower() for line in requirements}


# --- versions -----------------------------------------------------------------------------------


def test_the_pythons_claimed_are_those_declared_and_run(project: dict[str, Any]) -> None:
    pythons = classified(project, "Programming Language :: Python :: ")
    first, last = pythons[0], pythons[-1]
    assert project["requires-python"] == f">={first}"
    readme = text(ROOT / "README.md")
    assert f"Supported: Python {first} to {last};" in readme
    tox = text(ROOT / "tox.ini")
    for version in pythons:
        assert f"py{version.replace('.', '')}" in tox or version.replace(".", "") in tox, version
    # CI runs the suite on each of them (the first run on this machine's python3).
    ci = text(ROOT / ".ci" / "run")
    ran = set(re.findall(r"^suite_on (\d+\.\d+)", ci, flags=re.MULTILINE))
    stated = set(re.findall(r"(?:on Python|,|and) (\d\.\d+) with Django",
                            " ".join(readme.split())))
    assert ran and ran <= stated <= set(pythons), (ran, stated)


def test_the_djangos_claimed_are_those_declared_and_run(project: dict[str, Any]) -> None:
    djangos = classified(project, "Framework :: Django :: ")
    listed = ", ".join(djangos[:-1]) + f" and {djangos[-1]}"
    listed = listed.replace(djangos[0], f"{djangos[0]} LTS", 1)
    for page in (ROOT / "README.md", DOCS / "django.md"):
        assert f"Django {listed}" in " ".join(text(page).split()), page
    django_floor = next(r for r in project["optional-dependencies"]["django"]
                        if Requirement(r).name == "Django")
    assert Requirement(django_floor).specifier.contains(f"{djangos[0]}.0")
    ci = " ".join(text(ROOT / ".ci" / "run").split())
    for version in djangos[1:]:
        assert f"'Django>={version},<" in ci, version


# --- dependencies -------------------------------------------------------------------------------


def test_the_core_dependencies_are_the_ones_named(project: dict[str, Any]) -> None:
    core = [Requirement(line).name for line in project["dependencies"]]  # in the file's order
    said = ", ".join(f"`{name}`" for name in core[:-1]) + f" and `{core[-1]}`"
    for page in (ROOT / "README.md", DOCS / "index.md"):
        assert f"The core needs only {said}" in " ".join(text(page).split()), page


def test_every_extra_named_in_the_docs_exists(project: dict[str, Any]) -> None:
    extras = set(project["optional-dependencies"])
    for page in PAGES:
        for extra in re.findall(r"mobilgroup-backends\[([\w,-]+)\]", text(page)):
            assert set(extra.split(",")) <= extras, (page.name, extra)


def test_the_django_extra_brings_what_the_docs_set_up(project: dict[str, Any]) -> None:
    django = [Requirement(line) for line in project["optional-dependencies"]["django"]]
    by_name = {requirement.name.lower(): requirement for requirement in django}
    # docs/django.md's TASKS backend, and the backport only where Django 6 cannot run.
    assert "django_tasks_db.DatabaseBackend" in text(DOCS / "django.md")
    assert "django-tasks-db" in by_name and by_name["django-tasks-db"].marker is None
    marker = by_name["django-tasks"].marker
    assert marker is not None
    assert marker.evaluate({"python_version": "3.11"})
    assert not marker.evaluate({"python_version": "3.12"})
    for page in ("django.md", "scaling.md"):
        assert '"django_tasks_db"]' in text(DOCS / page), page  # in INSTALLED_APPS


def test_the_docs_extra_has_the_signature_formatter(project: dict[str, Any]) -> None:
    assert "separate_signature: true" in text(ROOT / "mkdocs.yml")
    assert names(project["optional-dependencies"]["docs"]) & {"ruff", "black"}


# --- links and references -----------------------------------------------------------------------


def anchors(page: Path) -> set[str]:
    """The ids MkDocs gives the headings of ``page`` (lower case, punctuation dropped, spaces
    as hyphens)."""
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text(page), flags=re.MULTILINE):
        slug = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
        found.add(re.sub(r"[\s]+", "-", slug))
    return found


def test_every_link_between_the_pages_resolves() -> None:
    checked = 0
    for page in PAGES:
        body = re.sub(r"```.*?```", "", text(page), flags=re.DOTALL)  # links in code are not links
        for target in re.findall(r"\]\(([^)\s]+)\)", body):
            if re.match(r"[a-z]+:", target):
                continue  # another site: not checked, tests never leave 127.0.0.1
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.is_file(), f"{page.name}: {target}"
            if anchor and linked.suffix == ".md":
                assert anchor in anchors(linked), f"{page.name}: {target}"
            checked += 1
    assert checked > 10


def test_no_reference_to_files_users_do_not_have() -> None:
    sources = [*PAGES, *sorted((ROOT / "mobilgroup_backends").rglob("*.py"))]
    for path in sources:
        body = text(path)
        assert "PROTOCOL.md" not in body and "DESIGN.md" not in body, path
        assert "doctest:" not in body, path  # it would show in the API reference
