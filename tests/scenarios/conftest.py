"""Scenario tests: the collection on a real multi-host test fleet.

Brings the test-fleet tool (tests/lab) and the AnQiCMS stand-in (tests/standin) onto
sys.path and loads the fleet's pytest fixtures. Every test here runs as root.
"""
from __future__ import annotations

import os
import sys

import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# tests/lab, tests/standin, and .collections for the shared helpers (ansible_collections.opsguard.anqicms.tests.utils).
for _sub in ('lab', 'standin', os.path.join('..', '.collections')):
    _path = os.path.normpath(os.path.join(TESTS, _sub))
    if _path not in sys.path:
        sys.path.insert(0, _path)


def pytest_configure(config: pytest.Config) -> None:
    """Load the fleet fixtures once per session, however many test directories ask for them."""
    if not config.pluginmanager.has_plugin('pytest_plugin'):
        config.pluginmanager.import_plugin('pytest_plugin')


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the fleet scenarios with a clear reason when not root (the fleet needs namespaces)."""
    del config
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason='scenario tests build a test fleet and need root')
        for item in items:
            item.add_marker(skip)
