"""Fixtures shared by the unit tests."""
from __future__ import annotations

import subprocess

import pytest

from ansible_collections.opsguard.anqicms.tests.utils.module_harness import run_module_main


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
