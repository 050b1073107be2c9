"""The seconds-per-file summary of tests/lab/pytest_plugin.py (pure functions: no fleet, no root).

Run: cd /work/main && .venv/bin/python -m pytest tests/lab/test_pytest_plugin.py -q
"""
from __future__ import annotations

import functools
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


def test_the_timeline_shows_each_workers_files_from_the_first_start() -> None:
    def report(nodeid, start, stop, worker=None):
        return SimpleNamespace(nodeid=nodeid, start=start, stop=stop, **({'worker_id': worker} if worker else {}))
    reports = [report('tests/scenarios/test_a.py::one', 1000.0, 1100.0, 'gw0'),
               report('tests/scenarios/test_a.py::two', 1100.0, 1250.4, 'gw0'),
               report('tests/lab/test_b.py::x', 1010.0, 1020.0, 'gw1'),
               report('tests/standin/test_c.py::y', 1251.0, 1300.0, 'gw0'),
               report('tests/lab/test_b.py::z', 1020.0, 1030.0, 'gw1'),
               SimpleNamespace(nodeid='tests/lab/test_b.py::w', duration=1.0)]   # no start/stop: left out
    assert [line.split() for line in pytest_plugin.worker_timeline(reports)] == [
        ['gw0', '0', '250', 'tests/scenarios/test_a.py'],
        ['gw0', '251', '300', 'tests/standin/test_c.py'],
        ['gw1', '10', '30', 'tests/lab/test_b.py'],
    ]
    assert pytest_plugin.worker_timeline([report('t.py::a', 5.0, 7.0)]) == [' main       0       2  t.py']
    assert pytest_plugin.worker_timeline([]) == []


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


@functools.lru_cache(maxsize=None)
def _scenarios_conftest():
    """tests/scenarios/conftest.py as a module of its own (it is no package), loaded once for these tests."""
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


class _FakeLab:
    """Answers DemoSite.ready()'s checks from a table and records every command."""

    def __init__(self, states: dict[str, str], marks: str = '') -> None:
        self.hosts = [SimpleNamespace(name=name, address=f'10.0.0.{i}') for i, name in enumerate(['node1'] + list(states), 1)]
        self.states, self.marks, self.commands, self.healed = states, marks, [], []

    def heal(self, host: str) -> None:
        self.healed.append(host)

    def exec(self, host: str, cmd: str, check: bool = True, timeout: float = 60) -> SimpleNamespace:
        del check, timeout
        self.commands.append((host, cmd))
        if cmd.startswith('systemctl is-active'):
            return SimpleNamespace(stdout=self.states[host])
        return SimpleNamespace(stdout=self.marks if cmd.startswith('ls -A') else '')


def _site(lab: _FakeLab, failed: int = 0):
    conftest = _scenarios_conftest()
    site = object.__new__(conftest.DemoSite)
    site.lab, site.apps, site.session, site.failures_seen = lab, [h.name for h in lab.hosts[1:]], SimpleNamespace(testsfailed=failed), 0
    site.deploys = 0

    def deploy() -> None:
        site.deploys += 1

    site.deploy = deploy
    return site


def test_ready_does_nothing_on_a_clean_fleet_and_resets_a_dirty_one() -> None:
    clean = {'node2': 'active\nenabled\n', 'node3': 'active\nenabled\n'}
    lab = _FakeLab(clean)
    site = _site(lab)
    site.ready()
    assert site.deploys == 0 and lab.healed == ['node1', 'node2', 'node3']
    assert not [cmd for _host, cmd in lab.commands if cmd.startswith(('rm ', 'systemctl restart'))]
    for states, marks, failed in (({'node2': 'active\ndisabled\n', 'node3': 'active\nenabled\n'}, '', 0),   # disabled
                                  ({'node2': 'inactive\nenabled\n', 'node3': 'active\nenabled\n'}, '', 0),  # stopped
                                  ({'node2': 'active\nenabled\nopt_anqicms_www.json\n', 'node3': 'active\nenabled\n'}, '', 0),
                                  (clean, 'www@10.0.0.2:8001\n', 0),                                        # drained
                                  (clean, '', 1)):                                                          # a test failed
        lab = _FakeLab(states, marks)
        site = _site(lab, failed)
        site.ready()
        done = [(host, cmd.split(' ', 2)[:2]) for host, cmd in lab.commands if cmd.startswith(('rm ', 'systemctl restart'))]
        assert site.deploys == 1, (states, marks, failed)
        assert ('node1', ['rm', '-f']) in done and ('node2', ['rm', '-f']) in done and ('node3', ['rm', '-f']) in done
        assert [h for h, cmd in done if cmd[:2] == ['systemctl', 'restart']] == ['node2', 'node3']
        site.ready()   # a failure is counted once; a fleet that (in this fake) stays dirty is reset again
        assert site.deploys == (1 if states == clean and not marks else 2), (states, marks, failed)
