# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet playbooks on a 5-host fleet: node1 = MariaDB + nginx (site www, 4 backends), node2..node5 = AnQiCMS www.

In file order, on one fleet (lab name OPSGUARD_LAB_NAME, default ``pb``):
memory_check's exit status follows fail_on -> check mode stops nothing -> two critical hosts with min_healthy
leaving room for one: exactly one stopped and the report says why not the other -> a rerun changes nothing ->
recover brings it back -> a host whose network is cut mid-run: the other is stopped and the report shows the cut one.
Then, on a 1-host self-contained fleet (lab_fleet_factory): emergency_stop backup=true takes a cold backup and
recover restore=latest brings back a row deleted after the stop.
Every outcome is confirmed from outside the playbook (systemd on the hosts, nginx state, the reports).
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import threading
from typing import Any, Iterator

import pytest

import fleet

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tests' / 'demo'))
import topology  # noqa: E402  pylint: disable=wrong-import-position

PLAYBOOKS = REPO / 'playbooks'
LAB = os.environ.get('OPSGUARD_LAB_NAME', 'pb')
APPS = ['node2', 'node3', 'node4', 'node5']
RECAP = re.compile(r'^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', re.M)


class Run:
    """One ansible-playbook run against the demo inventory."""

    def __init__(self, proc: subprocess.CompletedProcess, report_dir: pathlib.Path) -> None:
        self.rc = proc.returncode
        self.out = proc.stdout + proc.stderr
        self.report_dir = report_dir
        self.recap = {m.group(1): {'ok': int(m.group(2)), 'changed': int(m.group(3)), 'unreachable': int(m.group(4)),
                                   'failed': int(m.group(5))} for m in RECAP.finditer(proc.stdout)}

    def report(self, name: str) -> dict[str, Any]:
        return json.loads((self.report_dir / name).read_text(encoding='utf-8'))


@pytest.fixture(scope='module')
def lab() -> Iterator[fleet.Fleet]:
    running = fleet.up(5, '1536M', name=LAB)
    try:
        yield running
    finally:
        fleet.down(LAB)


@pytest.fixture(scope='module')
def inventory(lab: fleet.Fleet) -> str:
    path = topology.write_inventory(lab)
    proc = playbook(lab, path, 'deploy', {}, tmp=pathlib.Path(lab.state_dir))
    assert proc.rc == 0, proc.out[-4000:]
    return path


def playbook(lab: fleet.Fleet, inventory_path: str, name: str, extra: dict[str, Any], tmp: pathlib.Path,
             check: bool = False, on_line: Any = None, shared_ssh: bool = True) -> Run:
    """Run playbooks/<name>.yml; on_line(line) is called for every output line while it runs.

    shared_ssh=False gives every task its own SSH connection: a host whose network is cut then fails within
    ConnectTimeout instead of leaving ansible waiting on a multiplexed master connection.
    """
    report_dir = tmp / 'reports'
    extra = dict({'report_dir': str(report_dir)}, **extra)
    vars_file = tmp / f'{name}-vars.json'
    vars_file.write_text(json.dumps(extra), encoding='utf-8')
    argv = [str(REPO / '.venv' / 'bin' / 'ansible-playbook'), '-i', inventory_path, str(PLAYBOOKS / f'{name}.yml'),
            '-e', f'@{vars_file}'] + (['--check'] if check else [])
    env = lab.ansible_env()
    env['ANSIBLE_INVENTORY'] = inventory_path
    if not shared_ssh:
        env['ANSIBLE_SSH_ARGS'] = '-o ControlMaster=no -o ControlPath=none'
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp) as proc:
        lines: list[str] = []
        timer = threading.Timer(600, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if on_line:
                    on_line(line)
        finally:
            timer.cancel()
        rc = proc.wait()
    return Run(subprocess.CompletedProcess(argv, rc, ''.join(lines), ''), report_dir)


def unit_state(lab: fleet.Fleet, host: str) -> tuple[str, str, str]:
    """(ActiveState, UnitFileState, MainPID) of the instance unit, read on the host."""
    out = lab.exec(host, 'systemctl show -p ActiveState,UnitFileState,MainPID anqicms-www.service', timeout=30).stdout
    props = dict(line.split('=', 1) for line in out.splitlines() if '=' in line)
    return props.get('ActiveState', ''), props.get('UnitFileState', ''), props.get('MainPID', '')


def drained(lab: fleet.Fleet) -> list[str]:
    return lab.exec('node1', 'ls /etc/nginx/opsguard-anqicms/drained 2>/dev/null || true', timeout=30).stdout.split()


def make_critical(lab: fleet.Fleet, host: str) -> None:
    topology.make_critical(lab, host, available_percent=8.0, leak_mib_per_s=0)


def release_memory(lab: fleet.Fleet, host: str) -> None:
    """Restart the instance (it frees what the test allocated) if it runs."""
    lab.exec(host, 'systemctl try-restart anqicms-www.service', timeout=60)


@pytest.fixture()
def tmp(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path


def test_memory_check_exit_status_follows_fail_on(lab, inventory, tmp):
    run = playbook(lab, inventory, 'memory_check', {}, tmp)
    assert run.rc == 0, run.out[-3000:]
    assert {h['host']: h['verdict'] for h in run.report('memory_check.json')['hosts']} == {f'node{i}': 'ok' for i in range(1, 6)}
    assert (tmp / 'reports' / 'memory_check.md').read_text(encoding='utf-8').count('| ok |') == 5

    make_critical(lab, 'node3')
    for fail_on, failing in (('critical', True), ('warning', True), ('never', False)):
        run = playbook(lab, inventory, 'memory_check', {'fail_on': fail_on}, tmp)
        assert (run.rc != 0) == failing, f'fail_on={fail_on}: rc {run.rc}\n' + run.out[-2000:]
        hosts = {h['host']: h for h in run.report('memory_check.json')['hosts']}
        assert hosts['node3']['verdict'] == 'critical' and hosts['node3']['culprit'] == 'anqicms:/opt/anqicms/www'
        if failing:
            assert 'node3 (critical, culprit anqicms:/opt/anqicms/www)' in run.out
    run = playbook(lab, inventory, 'memory_check', {'fail_on': 'sometimes'}, tmp)
    assert run.rc != 0 and 'fail_on must be one of critical, warning, never' in run.out


def test_check_mode_stops_nothing(lab, inventory, tmp):
    make_critical(lab, 'node4')   # node3 is still critical from the previous test
    before = {h: unit_state(lab, h) for h in APPS}
    run = playbook(lab, inventory, 'emergency_stop', {'min_healthy': 3}, tmp, check=True)
    assert run.rc == 0, run.out[-3000:]
    assert 'check mode: plan only' in run.out and 'STOP  node' in run.out
    assert {h: unit_state(lab, h) for h in APPS} == before
    assert drained(lab) == []
    for host in APPS:
        assert lab.exec(host, 'ls /var/lib/opsguard/emergency_stop 2>/dev/null || true').stdout.strip() == ''
    assert not (tmp / 'reports' / 'emergency_stop.json').exists()


def test_min_healthy_stops_exactly_one_and_says_why_not_the_other(lab, inventory, tmp):
    run = playbook(lab, inventory, 'emergency_stop', {'min_healthy': 3}, tmp)
    assert run.rc == 0, run.out[-4000:]
    report = run.report('emergency_stop.json')
    assert report['serving'] == 4 and report['min_healthy_count'] == 3
    assert [(s['host'], s['outcome']) for s in report['stopped']] in ([('node3', 'stopped_gracefully')], [('node4', 'stopped_gracefully')])
    stopped = report['stopped'][0]['host']
    other = 'node4' if stopped == 'node3' else 'node3'
    assert [(s['host'], s['reason']) for s in report['skipped']] == [
        (other, 'stopping it would leave 2 serving instance(s), below min_healthy=3 (3)')]
    assert report['stopped'][0]['verdict_after'] == 'ok' and report['stopped'][0]['recovered_bytes'] > 512 << 20
    # Confirmed on the hosts: exactly that instance is stopped and disabled, drained at nginx.
    states = {h: unit_state(lab, h) for h in APPS}
    assert states[stopped][:2] == ('inactive', 'disabled'), states
    assert all(states[h][0] == 'active' for h in APPS if h != stopped), states
    assert drained(lab) == [f'www@{lab.host(stopped).address}:8001']
    assert 'serves www.demo.test' in run.out


def test_rerun_changes_nothing(lab, inventory, tmp):
    before = {h: unit_state(lab, h) for h in APPS}
    run = playbook(lab, inventory, 'emergency_stop', {'min_healthy': 3}, tmp)
    assert run.rc == 0, run.out[-3000:]
    assert all(r['changed'] == 0 for h, r in run.recap.items() if h != 'localhost'), run.recap
    assert run.report('emergency_stop.json')['stopped'] == []
    stopped = [h for h, s in before.items() if s[0] == 'inactive']
    # Named explicitly, the stopped instance is reported as already stopped and nothing changes either.
    run = playbook(lab, inventory, 'emergency_stop', {'stop_instances': [f'{stopped[0]}:www'], 'min_healthy': 1}, tmp)
    assert run.rc == 0, run.out[-3000:]
    assert all(r['changed'] == 0 for h, r in run.recap.items() if h != 'localhost'), run.recap
    assert [s['reason'] for s in run.report('emergency_stop.json')['skipped']] == ['already stopped']
    assert {h: unit_state(lab, h) for h in APPS} == before


def test_recover_brings_it_back(lab, inventory, tmp):
    run = playbook(lab, inventory, 'recover', {}, tmp)
    assert run.rc == 0, run.out[-3000:]
    states = {h: unit_state(lab, h) for h in APPS}
    assert all(s[:2] == ('active', 'enabled') for s in states.values()), states
    assert drained(lab) == []
    run = playbook(lab, inventory, 'recover', {}, tmp)
    assert run.rc == 0 and all(r['changed'] == 0 for r in run.recap.values()), run.recap


def test_network_cut_mid_run(lab, inventory, tmp):
    for host in ('node3', 'node4'):
        release_memory(lab, host)
    make_critical(lab, 'node2')
    make_critical(lab, 'node5')
    cut: list[str] = []
    pending = {'task': ''}

    def on_line(line: str) -> None:
        if line.startswith('TASK ['):
            pending['task'] = line
        match = re.match(r'ok: \[(node[25])\]', line)
        if not cut and match and 'Stop | sites going down with' in pending['task']:
            victim = 'node5' if match.group(1) == 'node2' else 'node2'
            lab.cut(victim)
            cut.append(victim)

    try:
        run = playbook(lab, inventory, 'emergency_stop', {'min_healthy': 1}, tmp, on_line=on_line, shared_ssh=False)
    finally:
        for host in cut:
            lab.heal(host)
    assert cut, 'the run never reached the stop of an instance'
    report = run.report('emergency_stop.json')
    outcome = {s['host']: s for s in report['stopped']}
    first = 'node2' if cut[0] == 'node5' else 'node5'
    assert outcome[first]['outcome'] == 'stopped_gracefully', outcome
    assert outcome[cut[0]]['outcome'] == 'failed' and outcome[cut[0]]['error'].startswith('unreachable'), outcome
    assert unit_state(lab, first)[0] == 'inactive'
    assert unit_state(lab, cut[0])[0] == 'active'
    assert f"{cut[0]}:www  FAILED: unreachable" in run.out
    assert run.rc != 0 and f"Not stopped: {cut[0]}:www (unreachable" in run.out


def test_cold_backup_on_stop_and_restore_on_recover(lab_fleet_factory, tmp):
    """One self-contained host: emergency_stop backup=true, a write lost afterwards, recover restore=latest brings it back."""
    single = lab_fleet_factory(1, '1536M')
    inv = topology.write_inventory(single, local=True)
    run = playbook(single, inv, 'deploy', {}, tmp)
    assert run.rc == 0, run.out[-4000:]
    posted = single.exec('node1', "curl -s -m 10 -H 'Host: www.demo.test' -d 'title=kept&content=before+the+stop' http://127.0.0.1:8001/api/archive")
    ident = json.loads(posted.stdout)['data']['id']
    root = {'backup_login_user': 'root', 'restore_login_user': 'root'}

    run = playbook(single, inv, 'emergency_stop', dict(root, stop_instances=['node1:www'], min_healthy=0, backup=True, backup_verify=True), tmp)
    assert run.rc == 0, run.out[-4000:]
    stopped = run.report('emergency_stop.json')['stopped']
    assert [s['outcome'] for s in stopped] == ['stopped_gracefully'] and stopped[0]['backup_id'], stopped
    backups = single.exec('node1', 'ls /var/backups/anqicms/www').stdout.split()
    assert stopped[0]['backup_id'] in backups

    single.exec('node1', ['mysql', '-e', f'DELETE FROM anqicms_www.archives WHERE id = {int(ident)}'])
    run = playbook(single, inv, 'recover', dict(root, restore='latest'), tmp)
    assert run.rc == 0, run.out[-4000:]
    count = single.exec('node1', ['mysql', '-N', '-B', '-e', f'SELECT COUNT(*) FROM anqicms_www.archives WHERE id = {int(ident)}'])
    assert count.stdout.strip() == '1', 'the restore did not bring the row back'
    assert unit_state(single, 'node1')[:2] == ('active', 'enabled')
