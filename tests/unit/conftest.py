"""Fixtures shared by the unit tests."""
from __future__ import annotations

import subprocess

import pytest
from hypothesis import settings

from ansible_collections.opsguard.anqicms.tests.utils.module_harness import run_module_main

# `make test` (ansible-test units) draws the same examples on every run and every machine, so a red run can be
# reproduced and a green one stays green; a direct `pytest tests/unit` keeps exploring new examples each run.
settings.register_profile('make-test', derandomize=True, print_blob=True)


def pytest_configure(config):
    if 'ansible_test' in str(getattr(config, 'inipath', '') or ''):
        settings.load_profile('make-test')


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


@pytest.fixture(scope='session')
def run_main():
    """``run_main(module.main, args, check=False, diff=False) -> result``: see run_module_main."""
    return run_module_main
