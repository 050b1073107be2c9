"""Fixtures shared by the unit tests."""
from __future__ import annotations

import contextlib
import io
import json
import subprocess

import pytest

from ansible.module_utils.testing import patch_module_args


@pytest.fixture
def procs():
    """Spawn real processes; kill and reap whatever is left at the end."""
    started = []

    def spawn(args: list, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, **kwargs)
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def run_module_main(main, args: dict, check: bool = False, diff: bool = False) -> dict:
    """Run a module's ``main()`` in-process with ``args`` and return its JSON result.

    A module that crashes raises here (a traceback is a test failure); a module that answers
    with ``fail_json`` or ``exit_json`` returns its result. Works inside hypothesis ``@given``
    tests: no function-scoped fixture is involved.
    """
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out):
        try:
            main()
        except SystemExit:
            pass
        else:  # pragma: no cover - every module ends in exit_json/fail_json
            raise AssertionError('the module returned without exit_json/fail_json')
    text = out.getvalue()
    return json.loads(text[text.index('{'):])


@pytest.fixture(scope='session')
def run_main():
    """``run_main(module.main, args, check=False, diff=False) -> result``: see run_module_main."""
    return run_module_main
