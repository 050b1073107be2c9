"""The seconds-per-file summary of tests/lab/pytest_plugin.py (pure functions: no fleet, no root).

Run: cd /work/main && .venv/bin/python -m pytest tests/lab/test_pytest_plugin.py -q
"""
from __future__ import annotations

import pathlib
from types import SimpleNamespace

import pytest_plugin


def _report(nodeid: str, when: str, duration: float) -> SimpleNamespace:
    return SimpleNamespace(nodeid=nodeid, when=when, duration=duration)


def test_file_times_sum_every_phase_per_file_slowest_first() -> None:
    reports = [
        _report('tests/scenarios/test_a.py::test_one', 'setup', 100.0),   # a module fleet comes up here
        _report('tests/scenarios/test_a.py::test_one', 'call', 20.0),
        _report('tests/scenarios/test_a.py::test_one', 'teardown', 0.5),
        _report('tests/scenarios/test_a.py::test_two[x]', 'call', 30.0),
        _report('tests/scenarios/test_a.py::test_two[x]', 'teardown', 5.0),  # and goes down here
        _report('tests/lab/test_b.py::test_three', 'call', 200.0),
        _report('tests/standin/test_c.py::test_four', 'call', 0.0),
    ]
    assert pytest_plugin.file_times(reports) == [
        ('tests/lab/test_b.py', 200.0, 1),
        ('tests/scenarios/test_a.py', 155.5, 2),
        ('tests/standin/test_c.py', 0.0, 1),
    ]


def test_the_table_shows_share_tests_total_and_load() -> None:
    lines = pytest_plugin.file_times_table([('tests/lab/test_b.py', 300.0, 1), ('tests/scenarios/test_a.py', 100.0, 4)],
                                           (9.5, 7.25, 3.0))
    assert lines[0].split() == ['seconds', 'share', 'tests', 'file']
    assert lines[1].split() == ['300.0', '75.0%', '1', 'tests/lab/test_b.py']
    assert lines[2].split() == ['100.0', '25.0%', '4', 'tests/scenarios/test_a.py']
    assert lines[3].split() == ['400.0', '100.0%', '5', 'all', 'files']
    assert lines[4] == 'load average at the end (1, 5, 15 min): 9.50, 7.25, 3.00'
    assert pytest_plugin.file_times_table([])[-1].split() == ['0.0', '0.0%', '0', 'all', 'files']


def test_whole_files_go_longest_first_and_keep_their_inner_order() -> None:
    nodeids = ['tests/standin/test_c.py::a', 'tests/lab/test_b.py::x', 'tests/scenarios/test_a.py::one',
               'tests/lab/test_b.py::y', 'tests/scenarios/test_new.py::n', 'tests/scenarios/test_a.py::two',
               'tests/scenarios/test_other.py::o']
    seconds = {'tests/scenarios/test_a.py': 700, 'tests/lab/test_b.py': 100, 'tests/standin/test_c.py': 100}
    order = [nodeids[i] for i in pytest_plugin.longest_files_first(nodeids, seconds)]
    assert order == ['tests/scenarios/test_a.py::one', 'tests/scenarios/test_a.py::two',   # the longest file, whole
                     'tests/standin/test_c.py::a',                                          # equal length: collection order
                     'tests/lab/test_b.py::x', 'tests/lab/test_b.py::y',
                     'tests/scenarios/test_new.py::n', 'tests/scenarios/test_other.py::o']  # unknown: after, in order
    assert sorted(pytest_plugin.longest_files_first(nodeids, seconds)) == list(range(len(nodeids)))


def test_the_recorded_order_names_files_that_exist() -> None:
    root = pathlib.Path(__file__).resolve().parents[2]
    missing = [path for path in pytest_plugin.FILE_SECONDS if not (root / path).is_file()]
    assert missing == [], 'FILE_SECONDS names files that are gone (rename them there too)'


def _scenarios_conftest():
    """tests/scenarios/conftest.py as a module of its own (it is no package)."""
    import importlib.util  # pylint: disable=import-outside-toplevel

    path = pathlib.Path(__file__).resolve().parents[1] / 'scenarios' / 'conftest.py'
    spec = importlib.util.spec_from_file_location('scenarios_conftest', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_files_sharing_demo_site_go_to_one_worker_and_the_rest_whole_files() -> None:
    conftest = _scenarios_conftest()
    shared = conftest.SHARED_FLEET_FILES
    assert {conftest.scheduling_unit(f'{path}::test_x[a::b]') for path in shared} == {conftest.SHARED_GROUP}
    assert conftest.scheduling_unit('tests/scenarios/test_roles.py::test_converge') == 'tests/scenarios/test_roles.py'
    assert conftest.scheduling_unit('tests/lab/test_lab.py::test_up') == 'tests/lab/test_lab.py'
    root = pathlib.Path(__file__).resolve().parents[2]
    for path in shared:   # each exists, asks demo_site for a ready fleet, and runs in the order the tuple names
        assert 'demo_site.ready()' in (root / path).read_text(encoding='utf-8'), path
    seconds = [pytest_plugin.FILE_SECONDS[path] for path in shared]
    assert seconds == sorted(seconds, reverse=True), 'the files sharing demo_site run longest first, as listed'


def test_the_scheduler_is_xdists_loadfile_with_the_shared_unit() -> None:
    from xdist.scheduler import LoadFileScheduling  # pylint: disable=import-outside-toplevel,import-error

    conftest = _scenarios_conftest()
    assert conftest.pytest_xdist_make_scheduler(SimpleNamespace(getvalue={'dist': 'load'}.get), None) is None
    assert issubclass(conftest.SharedFleetScheduling, LoadFileScheduling)
    scheduler = object.__new__(conftest.SharedFleetScheduling)   # only the split is under test, not xdist's set-up
    assert scheduler._split_scope('tests/scenarios/test_remote_restore.py::test_x') == conftest.SHARED_GROUP  # pylint: disable=protected-access
    assert scheduler._split_scope('tests/scenarios/test_eda.py::test_y') == 'tests/scenarios/test_eda.py'  # pylint: disable=protected-access
