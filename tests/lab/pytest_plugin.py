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

At the end of a run, a table of seconds per test file (setup + call + teardown of its tests, module fixtures such as
a file's own fleet included) shows where the scenario layer's time goes, together with the load average.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable, Iterable, Iterator, MutableMapping

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


def _file_of(nodeid: str) -> str:
    """The test file of a pytest node id (``tests/x/test_y.py::test_z[p]`` -> ``tests/x/test_y.py``)."""
    return nodeid.split("::", 1)[0]


def file_times(reports: Iterable[Any]) -> list[tuple[str, float, int]]:
    """(file, seconds, tests) per test file from pytest's reports (setup, call and teardown), the slowest first."""
    seconds: dict[str, float] = {}
    tests: dict[str, set[str]] = {}
    for report in reports:
        path = _file_of(report.nodeid)
        seconds[path] = seconds.get(path, 0.0) + float(getattr(report, "duration", 0.0) or 0.0)
        tests.setdefault(path, set()).add(report.nodeid)
    return sorted(((path, spent, len(tests[path])) for path, spent in seconds.items()), key=lambda row: (-row[1], row[0]))


def file_times_table(rows: list[tuple[str, float, int]], load: tuple[float, float, float] | None = None) -> list[str]:
    """The per-file lines of the terminal summary (seconds, share of the total, tests, file)."""
    total = sum(spent for _path, spent, _count in rows)
    lines = [f"{'seconds':>8} {'share':>6} {'tests':>5}  file"]
    lines += [f"{spent:8.1f} {spent / total if total else 0.0:6.1%} {count:5d}  {path}" for path, spent, count in rows]
    lines.append(f"{total:8.1f} {1.0 if total else 0.0:6.1%} {sum(count for *_rest, count in rows):5d}  all files")
    if load is not None:
        lines.append("load average at the end (1, 5, 15 min): " + ", ".join(f"{value:.2f}" for value in load))
    return lines


def worker_timeline(reports: Iterable[Any]) -> list[str]:
    """When each worker ran which file, in seconds from the first test's start (``report.start``/``report.stop``;
    pytest-xdist sets ``worker_id``): where a worker waited or ran alone at the end. One line per worker and file."""
    spans: dict[tuple[str, str], list[float]] = {}
    for report in reports:
        start, stop = getattr(report, "start", None), getattr(report, "stop", None)
        if not isinstance(start, (int, float)) or not isinstance(stop, (int, float)):
            continue
        span = spans.setdefault((str(getattr(report, "worker_id", "") or "main"), _file_of(report.nodeid)), [start, stop])
        span[0], span[1] = min(span[0], start), max(span[1], stop)
    if not spans:
        return []
    origin = min(start for start, _stop in spans.values())
    rows = sorted(spans.items(), key=lambda item: (item[0][0], item[1][0]))
    return [f"{worker:>5} {start - origin:7.0f} {stop - origin:7.0f}  {path}" for (worker, path), (start, stop) in rows]


# Seconds per file of a whole scenario run on 2 vCPUs (`.ci/run` 2026-11-30): the order in which
# pytest-xdist hands whole files to workers (``--dist loadfile --no-loadscope-reorder``), the longest first, so that the
# last file a worker starts is a short one (the files sharing demo_site go as one unit where the first of them stands:
# tests/scenarios/conftest.py). Files not listed keep their collection order after the listed ones.
FILE_SECONDS = {
    "tests/scenarios/test_playbooks.py": 330, "tests/scenarios/test_monitor.py": 248,
    "tests/scenarios/test_roles.py": 150, "tests/scenarios/test_playbooks_single_host.py": 90,
    "tests/scenarios/test_release_url.py": 70, "tests/scenarios/test_fresh_hosts.py": 60,
    "tests/scenarios/test_database_settings.py": 50, "tests/scenarios/test_graceful_stop.py": 43,
    "tests/lab/test_lab.py": 40, "tests/scenarios/test_backup.py": 38,
    "tests/scenarios/test_proxy_failover.py": 33, "tests/standin/test_contract.py": 23,
    "tests/scenarios/test_remote_restore.py": 17, "tests/scenarios/test_memory_facts.py": 13,
    "tests/scenarios/test_eda.py": 9,
}


def longest_files_first(nodeids: list[str], seconds: dict[str, float]) -> list[int]:
    """Positions of ``nodeids`` reordered so that whole files come longest first (stable within a file and among
    files of equal or unknown length)."""
    files = [_file_of(nodeid) for nodeid in nodeids]
    first: dict[str, int] = {}
    for index, path in enumerate(files):
        first.setdefault(path, index)
    return sorted(range(len(files)), key=lambda i: (-seconds.get(files[i], 0.0), first[files[i]], i))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On pytest-xdist workers, put the longest files first (every worker sorts its collection the same way, and the
    controller hands out whole files in that order)."""
    del config
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    order = longest_files_first([item.nodeid for item in items], FILE_SECONDS)
    items[:] = [items[i] for i in order]


_REPORTS: list[Any] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep every phase's report (under pytest-xdist the controller receives the workers' reports)."""
    _REPORTS.append(report)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Seconds per test file: where the scenario layer's time goes, in every CI log."""
    rows = file_times(_REPORTS)
    if not rows:
        return
    terminalreporter.write_sep("=", "seconds per test file (setup + call + teardown)")
    for line in file_times_table(rows, os.getloadavg()):
        terminalreporter.write_line(line)
    timeline = worker_timeline(_REPORTS)
    if timeline:
        terminalreporter.write_sep("-", "when each worker ran each file (seconds from the first start)")
        terminalreporter.write_line(f"{'worker':>5} {'from':>7} {'to':>7}  file")
        for line in timeline:
            terminalreporter.write_line(line)


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
