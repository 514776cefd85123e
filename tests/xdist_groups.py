"""Keeps ``--dist loadgroup``'s groups in effect on pytest 9.2 (loaded by tests/conftest.py).

pytest-xdist tells its scheduler a test's group by appending ``@group`` to the test's id, through
an attribute pytest 9.2 no longer reads ids from (pytest-xdist issue 1386): the groups then
silently vanish, and every worker that gets a browser or PostgreSQL test starts its own Chromium
or server, migrates its own databases and fills its own 10,000-message inbox. Where that
happened, the id is renamed where pytest keeps it; with a pytest-xdist or pytest that names
groups itself, this changes nothing.
"""

from __future__ import annotations

import pytest


def xdist_group_of(item: pytest.Item) -> str | None:
    """The work unit ``--dist loadgroup`` gives ``item``: its ``xdist_group`` names, joined as
    pytest-xdist joins them."""
    names = {str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
             for mark in item.iter_markers("xdist_group")}
    return "_".join(sorted(names)) or None


@pytest.hookimpl(trylast=True)  # after pytest-xdist has named the groups its own way
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not getattr(config.option, "loadgroup", False):  # set in xdist's workers only
        return
    for item in items:
        group = xdist_group_of(item)
        if group is None or item.nodeid.endswith(f"@{group}"):
            continue
        structured = getattr(item, "_id", None)
        if structured is None or not hasattr(structured, "parse"):
            return  # a pytest of yet another kind: run ungrouped rather than guess
        item._id = structured.parse(f"{item.nodeid}@{group}")
