"""The parallel run's schedule: what ``--dist loadgroup`` (the default ``pytest``) relies on."""

from __future__ import annotations

import pytest


@pytest.mark.xdist_group("schedule-check")
def test_a_grouped_test_reaches_the_scheduler_with_its_group(request: pytest.FixtureRequest) -> None:
    """pytest-xdist's scheduler reads a test's group from its id: without it, the tests that
    share a browser or a database server each start their own, on every worker."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("only pytest-xdist's workers schedule by group (`pytest -n 0` has none)")
    assert request.node.nodeid.endswith("::test_a_grouped_test_reaches_the_scheduler_with_its_group"
                                        "@schedule-check")
