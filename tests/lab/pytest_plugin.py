"""pytest fixtures for the test fleet (tests/lab/fleet.py).

Load with ``pytest_plugins = ['pytest_plugin']`` from a top-level conftest, or
``from pytest_plugin import *`` (after putting tests/lab on sys.path) from any conftest.

- ``lab_fleet`` (session): a 3-host fleet named by OPSGUARD_LAB_NAME (default ``oglab``), memory
  limit OPSGUARD_LAB_MEMORY per host (default 1G, ``none`` for no limit), brought up once and torn
  down at the end of the session. After every test that used it, hosts are thawed, their network
  healed and their memory limits reset; a host that a test killed is replaced by bringing the fleet
  up again (the same Fleet object is updated in place).
- ``lab_fleet_factory``: ``factory(hosts=2, memory=None)`` brings up an extra fleet (own lab name,
  ``<name>-fN``) that is torn down at the end of the test.

Under pytest-xdist (``-n N``) every worker gets lab names of its own: on import, OPSGUARD_LAB_NAME and
OPSGUARD_LAB_TEST_NAME become ``<name>-w<N>`` for worker ``gw<N>``, so everything that derives a name from them
(the session fleet, factory fleets, ``fleet.derived_name``, state dirs, bridges, subnets) is the worker's own.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Callable, Iterator, MutableMapping

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
import fleet  # noqa: E402  pylint: disable=wrong-import-position

__all__ = ["lab_fleet", "lab_fleet_factory", "lab_fleet_reset"]

SESSION_HOSTS = 3
# Lab name variables and their defaults (tests/lab/test_lab.py reads OPSGUARD_LAB_TEST_NAME).
NAME_VARIABLES = (("OPSGUARD_LAB_NAME", fleet.DEFAULT_NAME), ("OPSGUARD_LAB_TEST_NAME", "oglabtest"))


def worker_lab_names(environ: MutableMapping[str, str]) -> None:
    """Under a pytest-xdist worker (PYTEST_XDIST_WORKER=gwN), make the lab name variables the worker's own.

    Applied once per process (OPSGUARD_LAB_WORKER records the worker); outside xdist nothing changes.
    """
    worker = environ.get("PYTEST_XDIST_WORKER", "")
    match = re.fullmatch(r"gw(\d+)", worker)
    if not match or environ.get("OPSGUARD_LAB_WORKER") == worker:
        return
    for variable, default in NAME_VARIABLES:
        environ[variable] = fleet.derived_name(f"w{match.group(1)}", environ.get(variable) or default)
    environ["OPSGUARD_LAB_WORKER"] = worker


worker_lab_names(os.environ)


def _session_memory() -> str | None:
    value = os.environ.get("OPSGUARD_LAB_MEMORY", "1G")
    return None if value.lower() in ("", "none", "unlimited") else value


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the test fleet needs root (namespaces, cgroups, overlays)")


@pytest.fixture(scope="session")
def lab_fleet() -> Iterator[fleet.Fleet]:
    """A 3-host fleet for the whole session."""
    _require_root()
    name = fleet.lab_name()
    running = fleet.up(SESSION_HOSTS, _session_memory(), name=name)
    try:
        yield running
    finally:
        fleet.down(name)


@pytest.fixture(autouse=True)
def lab_fleet_reset(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used lab_fleet: thaw, heal, reset memory limits, replace killed hosts."""
    yield
    if "lab_fleet" not in request.fixturenames:
        return
    running: fleet.Fleet = request.getfixturevalue("lab_fleet")
    if not all(host.alive() for host in running.hosts):
        replacement = fleet.up(len(running.hosts), running.memory, name=running.name, image=running.image)
        running.__dict__.update(replacement.__dict__)
        return
    for host in running.hosts:
        if running.frozen(host):
            running.thaw(host)
        if not running.link_up(host):
            running.heal(host)
        running.set_memory_limit(host, running.memory)


@pytest.fixture()
def lab_fleet_factory() -> Iterator[Callable[..., fleet.Fleet]]:
    """Bring up extra fleets of any size for one test; each is torn down after the test."""
    _require_root()
    base = fleet.lab_name()[:14]
    made: list[str] = []

    def factory(hosts: int = 2, memory: str | int | None = None) -> fleet.Fleet:
        name = f"{base}-f{len(made) + 1}"
        made.append(name)
        return fleet.up(hosts, memory, name=name)

    try:
        yield factory
    finally:
        errors = []
        for name in made:
            try:
                fleet.down(name)
            except fleet.LabError as exc:
                errors.append(str(exc))
        if errors:
            raise fleet.LabError("\n".join(errors))
