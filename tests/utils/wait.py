# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting for a condition in tests: one polling loop for every test layer.

Import as ``ansible_collections.opsguard.anqicms.tests.utils.wait`` (units: the collection is importable; other
layers put ``.collections`` on ``sys.path``).
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar('T')


def poll(predicate: Callable[[], T], timeout: float, interval: float = 0.2) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy or ``timeout`` has passed.

    Returns the first truthy value, or else the value of one last call made after the deadline.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, what: str = 'the condition', interval: float = 0.02) -> T:
    """Like `poll`, but a condition still false after ``timeout`` seconds fails the test, naming ``what``."""
    value = poll(predicate, timeout, interval)
    if not value:
        raise AssertionError('timed out after %s s waiting for %s' % (timeout, what))
    return value
