"""Fixtures for the test fleet's own tests (the same ones scenario tests use)."""
from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def pytest_configure(config):
    """Load the fleet fixtures once per session, however many test directories ask for them."""
    if not config.pluginmanager.has_plugin('pytest_plugin'):
        config.pluginmanager.import_plugin('pytest_plugin')
