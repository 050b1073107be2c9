# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet playbooks on a 4-host fleet: node1 = MariaDB + nginx (site www, 3 backends), node2..node4 = AnQiCMS www.

In file order, on the deployed demo topology the proxy failover and remote restore scenarios use after this file
(``demo_site`` in tests/scenarios/conftest.py, lab name ``<OPSGUARD_LAB_NAME>-demo``, default ``oglab-demo``):
memory_check's exit status follows opsguard_fail_on (bad inputs refused before measuring) -> diagnose reports every host
-> check mode stops nothing -> two critical hosts with min_healthy
leaving room for one: exactly one stopped and the report says why not the other -> a rerun changes nothing ->
recover brings it back -> a host whose network is cut mid-run: the other is stopped and the report shows the cut one.
Then recycle: one instance under steady traffic through nginx (0 failed requests, a new PID) -> check mode plans only
and the recycle limit refuses -> an instance that cannot start stays out of rotation and fails the run -> a config.json
cut short or emptied as by a kill mid-rewrite is put back by recover and by recycle before the start.
Then, on a 1-host self-contained fleet deployed once (lab ``<OPSGUARD_LAB_NAME>-pb1``): emergency_stop backup=true
takes a cold backup and recover restore=latest brings back a row deleted after the stop; then, with the backups of
that test removed, a cold backup drains, stops, backs up, starts and undrains, and restore.yml (check mode first)
brings back a row deleted after the backup.
Last, recycle restores a config.json cut short from the newest verified backup.
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
import time
import xml.etree.ElementTree as ET
from typing import Any, Iterator

import pytest

import fleet
from ansible_collections.opsguard.anqicms.tests.utils import ansible_runner
from ansible_collections.opsguard.anqicms.tests.utils.lab import running_fleet
from ansible_collections.opsguard.anqicms.tests.utils.webhook_receiver import Receiver

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tests' / 'demo'))
import topology  # noqa: E402  pylint: disable=wrong-import-position
import traffic  # noqa: E402  pylint: disable=wrong-import-position

PLAYBOOKS = REPO / 'playbooks'
APPS = ['node2', 'node3', 'node4']
HOSTS = ['node1'] + APPS   # demo_site's hosts


class Run:
    """One ansible-playbook run against the demo inventory."""

    def __init__(self, proc: subprocess.CompletedProcess, report_dir: pathlib.Path) -> None:
        self.rc = proc.returncode
        self.out = proc.stdout + proc.stderr
        self.report_dir = report_dir
        self.recap = ansible_runner.recap(proc.stdout)

    def report(self, name: str) -> dict[str, Any]:
        return json.loads((self.report_dir / name).read_text(encoding='utf-8'))


@pytest.fixture(scope='module')
def lab(demo_site: Any) -> fleet.Fleet:
    demo_site.ready()
    assert [h.name for h in demo_site.lab.hosts] == HOSTS
    return demo_site.lab


@pytest.fixture(scope='module')
def inventory(demo_site: Any, lab: fleet.Fleet) -> str:
    del lab
    return demo_site.inventory


def playbook(lab: fleet.Fleet, inventory_path: str, name: str | pathlib.Path, extra: dict[str, Any], tmp: pathlib.Path,
             check: bool = False, on_line: Any = None, shared_ssh: bool = True) -> Run:
    """Run playbooks/<name>.yml (or the playbook at a path); on_line(line) is called for every output line while it runs.

    shared_ssh=False gives every task its own SSH connection: a host whose network is cut then fails within
    ConnectTimeout instead of leaving ansible waiting on a multiplexed master connection.
    """
    report_dir = tmp / 'reports'
    extra = dict({'opsguard_report_dir': str(report_dir)}, **extra)
    path = name if isinstance(name, pathlib.Path) else PLAYBOOKS / f'{name}.yml'
    vars_file = tmp / f'{path.stem}-vars.json'
    vars_file.write_text(json.dumps(extra), encoding='utf-8')
    argv = [str(REPO / '.venv' / 'bin' / 'ansible-playbook'), '-i', inventory_path, str(path),
            '-e', f'@{vars_file}'] + (['--check'] if check else [])
    env = lab.ansible_env()
    env['ANSIBLE_INVENTORY'] = inventory_path
    if not shared_ssh:
        env['ANSIBLE_SSH_ARGS'] = '-o ControlMaster=no -o ControlPath=none'
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp) as proc:
        lines: list[str] = []
        timer = threading.Timer(float(os.environ.get('OPSGUARD_PLAYBOOK_TIMEOUT', '600')), proc.kill)  # a busy machine may need more
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


@pytest.fixture(scope='module')
def single_host() -> Iterator[tuple[fleet.Fleet, str]]:
    """One self-contained host (MariaDB, nginx and AnQiCMS www) with the demo deployed: (fleet, inventory path)."""
    with running_fleet(1, '1536M', fleet.derived_name('pb1'), lab=fleet) as running:
        inv = topology.write_inventory(running, local=True)
        run = playbook(running, inv, 'deploy', {}, tmp=pathlib.Path(running.state_dir))
        assert run.rc == 0, run.out[-4000:]
        yield running, inv


def test_memory_check_exit_status_follows_fail_on(lab, inventory, tmp):
    run = playbook(lab, inventory, 'memory_check', {}, tmp)
    assert run.rc == 0, run.out[-3000:]
    assert {h['host']: h['verdict'] for h in run.report('memory_check.json')['hosts']} == {h: 'ok' for h in HOSTS}
    assert (tmp / 'reports' / 'memory_check.md').read_text(encoding='utf-8').count('| ok |') == len(HOSTS)

    make_critical(lab, 'node3')
    junit = tmp / 'junit' / 'memory_check.xml'
    for fail_on, failing in (('critical', True), ('warning', True), ('never', False)):
        extra = {'opsguard_fail_on': fail_on, **({'opsguard_junit_report': str(junit)} if fail_on == 'critical' else {})}
        run = playbook(lab, inventory, 'memory_check', extra, tmp)
        assert (run.rc != 0) == failing, f'fail_on={fail_on}: rc {run.rc}\n' + run.out[-2000:]
        hosts = {h['host']: h for h in run.report('memory_check.json')['hosts']}
        assert hosts['node3']['verdict'] == 'critical' and hosts['node3']['culprit'] == 'anqicms:/opt/anqicms/www'
        if failing:
            assert 'node3 (critical, culprit anqicms:/opt/anqicms/www)' in run.out
        if fail_on == 'critical':
            # The JUnit report, written before the run failed: one case per host, the same outcomes as the JSON report.
            root = ET.fromstring(junit.read_bytes())
            cases = {case.get('name'): case for case in root.iter('testcase')}
            assert sorted(cases) == sorted(hosts) == HOSTS
            failure = cases['node3'].find('failure')
            assert failure.get('type') == 'critical' and 'culprit: anqicms:/opt/anqicms/www' in failure.text
            outcome = {'ok': [], 'warning': ['skipped'], 'critical': ['failure'], 'unknown': ['error']}
            assert {h: [c.tag for c in case if c.tag != 'system-out'] for h, case in cases.items()} == \
                {h: outcome[row['verdict']] for h, row in hosts.items()}
            assert int(root.get('failures')) == sum(row['verdict'] == 'critical' for row in hosts.values())
    # Inputs are checked before anything is measured: a bad value, an old unprefixed name.
    for extra, message in (({'opsguard_fail_on': 'sometimes'}, "opsguard_fail_on must be one of critical, warning, never, got 'sometimes'."),
                           ({'fail_on': 'warning'}, 'fail_on was renamed opsguard_fail_on.'),
                           ({'opsguard_sample_seconds': 'nan'}, "opsguard_sample_seconds must be a number from 0 to 3600, got 'nan'.")):
        run = playbook(lab, inventory, 'memory_check', extra, tmp)
        assert run.rc != 0 and message in run.out, run.out[-2000:]
        assert 'TASK [Gather memory facts]' not in run.out


def test_diagnose_reports_every_host(lab, inventory, tmp):
    run = playbook(lab, inventory, 'diagnose', {'opsguard_sample_seconds': 3, 'opsguard_journal_lines': 5}, tmp)
    assert run.rc == 0, run.out[-3000:]
    report = run.report('diagnose.json')
    assert sorted(report) == HOSTS
    assert report['node3']['verdict'] == 'critical'   # made critical by the previous test
    kinds = {k['kind'] for k in report['node3']['by_kind']}
    assert 'anqicms' in kinds, report['node3']['by_kind']
    assert {'database', 'nginx'} <= {k['kind'] for k in report['node1']['by_kind']}
    assert int(report['node1']['mariadb']['max_connections']) > 0
    # The app role sets GOMEMLIMIT and a memory limit per instance: neither recommendation may appear.
    for host in APPS:
        recs = ' '.join(report[host]['recommendations'])
        assert 'runs without GOMEMLIMIT' not in recs and 'no memory limit of its own' not in recs, (host, recs)
        assert set(report[host]['oom']) >= {'recent', 'messages', 'host_oom_kills'}
    assert 'verdict CRITICAL' in run.out
    run = playbook(lab, inventory, 'diagnose', {'opsguard_journal_lines': -1, 'journal_lines': 3}, tmp)
    assert run.rc != 0 and 'journal_lines was renamed opsguard_journal_lines.' in run.out, run.out[-2000:]
    assert "opsguard_journal_lines must be a whole number from 0 to 100000, got -1." in run.out
    assert 'TASK [Memory per service, with growth sampling]' not in run.out


def test_check_mode_stops_nothing(lab, inventory, tmp):
    make_critical(lab, 'node4')   # node3 is still critical from the previous test
    before = {h: unit_state(lab, h) for h in APPS}
    # Bad inputs are refused before the fleet is measured.
    for extra, message in (({'min_healthy': 3}, 'min_healthy was renamed opsguard_min_healthy.'),
                           ({'opsguard_min_healthy': 'abc'}, "opsguard_min_healthy must be a count"),
                           ({'opsguard_max_parallel': 0}, 'opsguard_max_parallel must be a whole number from 1 to 1000, got 0.'),
                           ({'opsguard_stop_instances': ['node3']}, 'opsguard_stop_instances entries must be "host:instance"')):
        run = playbook(lab, inventory, 'emergency_stop', extra, tmp, check=True)
        assert run.rc != 0 and message in run.out, run.out[-2000:]
        assert 'TASK [Gather memory facts]' not in run.out
    # 50 % of the 3 serving instances, rounded up: 2 must keep serving.
    run = playbook(lab, inventory, 'emergency_stop', {'opsguard_min_healthy': '50%'}, tmp, check=True)
    assert run.rc == 0, run.out[-3000:]
    assert 'check mode: plan only' in run.out and 'STOP  node' in run.out
    assert 'min_healthy 50% (2 must keep serving)' in run.out
    assert {h: unit_state(lab, h) for h in APPS} == before
    assert drained(lab) == []
    for host in APPS:
        assert lab.exec(host, 'ls /var/lib/opsguard/emergency_stop 2>/dev/null || true').stdout.strip() == ''
    assert not (tmp / 'reports' / 'emergency_stop.json').exists()


def test_min_healthy_stops_exactly_one_and_says_why_not_the_other(lab, inventory, tmp):
    run = playbook(lab, inventory, 'emergency_stop', {'opsguard_min_healthy': 2}, tmp)
    assert run.rc == 0, run.out[-4000:]
    report = run.report('emergency_stop.json')
    assert report['serving'] == 3 and report['min_healthy_count'] == 2
    assert [(s['host'], s['outcome']) for s in report['stopped']] in ([('node3', 'stopped_gracefully')], [('node4', 'stopped_gracefully')])
    stopped = report['stopped'][0]['host']
    other = 'node4' if stopped == 'node3' else 'node3'
    assert [(s['host'], s['reason']) for s in report['skipped']] == [
        (other, 'stopping it would leave 1 serving instance(s), below opsguard_min_healthy=2 (2)')]
    assert report['stopped'][0]['verdict_after'] == 'ok' and report['stopped'][0]['recovered_bytes'] > 512 << 20
    # Confirmed on the hosts: exactly that instance is stopped and disabled, drained at nginx.
    states = {h: unit_state(lab, h) for h in APPS}
    assert states[stopped][:2] == ('inactive', 'disabled'), states
    assert all(states[h][0] == 'active' for h in APPS if h != stopped), states
    assert drained(lab) == [f'www@{lab.host(stopped).address}:8001']
    assert 'serves www.demo.test' in run.out


def test_rerun_changes_nothing(lab, inventory, tmp):
    before = {h: unit_state(lab, h) for h in APPS}
    run = playbook(lab, inventory, 'emergency_stop', {'opsguard_min_healthy': 2}, tmp)
    assert run.rc == 0, run.out[-3000:]
    assert all(r['changed'] == 0 for h, r in run.recap.items() if h != 'localhost'), run.recap
    assert run.report('emergency_stop.json')['stopped'] == []
    stopped = [h for h, s in before.items() if s[0] == 'inactive']
    # Named explicitly, the stopped instance is reported as already stopped and nothing changes either.
    run = playbook(lab, inventory, 'emergency_stop', {'opsguard_stop_instances': [f'{stopped[0]}:www'], 'opsguard_min_healthy': 1}, tmp)
    assert run.rc == 0, run.out[-3000:]
    assert all(r['changed'] == 0 for h, r in run.recap.items() if h != 'localhost'), run.recap
    assert [s['reason'] for s in run.report('emergency_stop.json')['skipped']] == ['already stopped']
    assert {h: unit_state(lab, h) for h in APPS} == before


def test_recover_brings_it_back(lab, inventory, tmp):
    # Records are untrusted: one that names another unit is refused and nothing on its host starts.
    stopped = [h for h in APPS if unit_state(lab, h)[0] == 'inactive']
    assert len(stopped) == 1, stopped
    record = '/var/lib/opsguard/emergency_stop/opt_anqicms_www.json'
    original = lab.exec(stopped[0], f'cat {record}').stdout
    tampered = json.loads(original)
    tampered['instance']['unit'] = 'ssh.service'
    lab.exec(stopped[0], ['python3', '-c', 'import sys; open(sys.argv[1], "w").write(sys.argv[2])', record, json.dumps(tampered)])
    run = playbook(lab, inventory, 'recover', {'opsguard_recover_instances': [f'{stopped[0]}:www']}, tmp)
    assert run.rc != 0 and f'{stopped[0]}: the emergency_stop record {record} is refused' in run.out, run.out[-3000:]
    assert "instance.unit 'ssh.service' is not the unit of instance www" in run.out
    assert unit_state(lab, stopped[0])[:2] == ('inactive', 'disabled') and drained(lab) != []
    lab.exec(stopped[0], ['python3', '-c', 'import sys; open(sys.argv[1], "w").write(sys.argv[2])', record, original])
    run = playbook(lab, inventory, 'recover', {'recover_instances': [f'{stopped[0]}:www']}, tmp)
    assert run.rc != 0 and 'recover_instances was renamed opsguard_recover_instances.' in run.out, run.out[-2000:]

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
    make_critical(lab, 'node4')
    cut: list[str] = []
    pending = {'task': ''}

    def on_line(line: str) -> None:
        if line.startswith('TASK ['):
            pending['task'] = line
        match = re.match(r'ok: \[(node[24])\]', line)
        if not cut and match and 'Stop | sites going down with' in pending['task']:
            victim = 'node4' if match.group(1) == 'node2' else 'node2'
            lab.cut(victim)
            cut.append(victim)

    try:
        run = playbook(lab, inventory, 'emergency_stop', {'opsguard_min_healthy': 1}, tmp, on_line=on_line, shared_ssh=False)
    finally:
        for host in cut:
            lab.heal(host)
    assert cut, 'the run never reached the stop of an instance'
    report = run.report('emergency_stop.json')
    outcome = {s['host']: s for s in report['stopped']}
    first = 'node2' if cut[0] == 'node4' else 'node4'
    assert outcome[first]['outcome'] == 'stopped_gracefully', outcome
    assert outcome[cut[0]]['outcome'] == 'failed' and outcome[cut[0]]['error'].startswith('unreachable (found at task '), outcome
    # The connection error itself, not what a later task of the role made of the missing result.
    error = outcome[cut[0]]['error']
    assert f'remote host "{lab.host(cut[0]).address}"' in error and 'has no attribute' not in error, outcome
    assert unit_state(lab, first)[0] == 'inactive'
    assert unit_state(lab, cut[0])[0] == 'active'
    assert f"{cut[0]}:www  FAILED: unreachable" in run.out
    assert run.rc != 0 and f"Not stopped: {cut[0]}:www (unreachable" in run.out
    # Its backend stays drained until someone puts it back: once the host is reachable again, the proxy role's undrain.
    backend = f'{lab.host(cut[0]).address}:8001'
    assert f'www@{backend}' in drained(lab), drained(lab)
    run = playbook(lab, inventory, REPO / 'tests' / 'roles' / 'drain.yml',
                   {'drain_action': 'undrain', 'proxy_drain_site': 'www', 'proxy_drain_backend': backend}, tmp)
    assert run.rc == 0, run.out[-3000:]
    assert f'www@{backend}' not in drained(lab) and cut[0] in serving(lab), drained(lab)


# ---------------------------------------------------------------- recycle (and config.json repair before a start)

CONFIG = '/opt/anqicms/www/config.json'
KEPT = '/var/lib/opsguard/config/opt_anqicms_www.json'


def serving(lab: fleet.Fleet) -> list[str]:
    return [h for h in APPS if unit_state(lab, h)[0] == 'active' and f'www@{lab.host(h).address}:8001' not in drained(lab)]


def answers(lab: fleet.Fleet, host: str) -> bool:
    out = lab.exec(host, "curl -s -m 5 http://127.0.0.1:8001/system/api/version/info || true", timeout=30).stdout
    return '"code":0' in out.replace(' ', '')


def wait_answers(lab: fleet.Fleet, host: str, seconds: float = 120) -> None:
    """Bounded wait for systemd to (re)start the instance after a fix; fails the test when it never answers."""
    deadline = time.monotonic() + seconds
    while not answers(lab, host):
        assert time.monotonic() < deadline, f'{host}:www did not answer within {seconds} s'
        time.sleep(2)


def test_recycle_under_traffic_loses_no_request(lab, inventory, tmp):
    """Recycle one instance named as an alert names it (host and install directory), under steady reads and writes
    through nginx: no request fails, no acknowledged write is lost, the instance has a new PID and serves again."""
    for host in APPS:
        release_memory(lab, host)
    up = serving(lab)
    for host in up:
        wait_answers(lab, host)
    assert len(up) >= 2, f'the earlier tests left fewer than two instances serving: {up}'
    target = up[0]
    pid_before = unit_state(lab, target)[2]
    load = traffic.Traffic(f"http://{lab.host('node1').address}", topology.SERVER_NAME, threads=4, interval=0.05,
                           duration=900, max_requests=100000, write_ratio=0.3)
    load.start()
    try:
        run = playbook(lab, inventory, 'recycle', {'opsguard_instances': [f'{target}:/opt/anqicms/www']}, tmp)
    finally:
        result = load.stop()
    assert run.rc == 0, run.out[-4000:]
    assert result['requests'] > 50 and result['failed'] == 0, result['failures'][:5]
    assert traffic.missing_ids(load.acknowledged, traffic.lab_sql(lab.name, 'node1')) == []
    [done] = run.report('recycle.json')['recycled']
    assert (done['host'], done['name'], done['outcome'], done['config_repaired']) == (target, 'www', 'recycled', False), done
    assert done['drained'] == [{'proxy': 'node1', 'site': 'www', 'backend': f'{lab.host(target).address}:8001'}], done
    state = unit_state(lab, target)
    assert state[:2] == ('active', 'enabled') and state[2] not in ('', '0', pid_before), (pid_before, state)
    assert answers(lab, target) and target in serving(lab)
    history = json.loads(lab.exec(target, 'cat /var/lib/opsguard/recycle/opt_anqicms_www.json').stdout)
    assert history['directory'] == '/opt/anqicms/www' and len(history['recycled_at']) == 1, history
    assert lab.exec(target, f'cmp {CONFIG} {KEPT}', check=False).returncode == 0, 'no last-good copy of config.json was kept'
    # The journal of the host: the drain, the stop and the undrain the app role records, then the recycle itself.
    records = []
    for _attempt in range(20):
        out = lab.exec(target, 'journalctl --no-pager -o json SYSLOG_IDENTIFIER=opsguard INSTANCE=www ACTION=recycle',
                       check=False).stdout
        records = [json.loads(line) for line in out.splitlines() if line.strip()]
        if records:
            break
        time.sleep(0.5)
    assert records, 'no ACTION=recycle record in the journal of ' + target
    assert (records[-1]['OUTCOME'], records[-1]['DIRECTORY'], records[-1]['CONFIG_REPAIRED']) == ('recycled', '/opt/anqicms/www', 'false'), records[-1]


def test_recycle_plans_in_check_mode_and_refuses_beyond_the_limit(lab, inventory, tmp):
    target = next(h for h in APPS if lab.exec(h, 'test -f /var/lib/opsguard/recycle/opt_anqicms_www.json', check=False).returncode == 0)
    before = {h: unit_state(lab, h) for h in APPS}
    run = playbook(lab, inventory, 'recycle', {'opsguard_instances': [f'{target}:www']}, tmp, check=True)
    assert run.rc == 0, run.out[-3000:]
    assert f'RECYCLE  {target}:www' in run.out and 'recycled 1 time(s) within the window' in run.out
    assert 'check mode: plan only' in run.out and not (tmp / 'reports' / 'recycle.json').exists()
    run = playbook(lab, inventory, 'recycle', {'opsguard_instances': [f'{target}:www'], 'opsguard_recycle_limit': 1}, tmp)
    assert run.rc != 0, run.out[-3000:]
    assert f'{target}:www: it was recycled 1 time(s) in the last 3600 s (opsguard_recycle_limit 1' in run.out, run.out[-3000:]
    assert 'stop it and keep it stopped with opsguard.anqicms.emergency_stop' in run.out
    assert 'Recycle | batch by batch' not in run.out
    assert {h: unit_state(lab, h) for h in APPS} == before


def test_recycle_failed_health_check_stays_out_of_rotation(lab, inventory, tmp):
    """An instance that cannot start (its locales/ gone: AnQiCMS exits 1) fails the health check: the run fails naming
    it and nginx keeps it out of rotation; once fixed, a recycle brings it back."""
    up = serving(lab)
    assert len(up) >= 2, up
    victim = up[-1]
    backend = f'www@{lab.host(victim).address}:8001'
    lab.exec(victim, 'mv /opt/anqicms/www/locales /opt/anqicms/www/locales.off')
    try:
        run = playbook(lab, inventory, 'recycle', {'opsguard_instances': [f'{victim}:www'], 'opsguard_health_timeout': 10}, tmp)
    finally:
        lab.exec(victim, 'mv /opt/anqicms/www/locales.off /opt/anqicms/www/locales')
    assert run.rc != 0, run.out[-3000:]
    assert f'Not recycled: {victim}:www (failed at task' in run.out, run.out[-3000:]
    [failed] = run.report('recycle.json')['recycled']
    assert failed['outcome'] == 'failed' and 'health of' in failed['error'], failed
    assert backend in drained(lab)
    wait_answers(lab, victim)   # systemd restarts it (Restart=on-failure) now that it can start
    assert backend in drained(lab), 'an instance that failed its health check went back into rotation by itself'
    run = playbook(lab, inventory, 'recycle', {'opsguard_instances': [f'{victim}:www']}, tmp)
    assert run.rc == 0, run.out[-4000:]
    assert backend not in drained(lab) and victim in serving(lab)


def test_kill_mid_config_rewrite_recover_and_recycle_restore_it(lab, inventory, tmp):
    """AnQiCMS rewrites config.json with O_TRUNC and no fsync: a kill mid-write leaves it cut short or empty and the
    instance cannot start. recover and recycle put back the last-good copy before the start and say so."""
    stopped = [h for h in APPS if lab.exec(h, 'test -f /var/lib/opsguard/emergency_stop/opt_anqicms_www.json', check=False).returncode == 0]
    if not stopped:
        victim = serving(lab)[0]
        run = playbook(lab, inventory, 'emergency_stop', {'opsguard_stop_instances': [f'{victim}:www'], 'opsguard_min_healthy': 1}, tmp)
        assert run.rc == 0, run.out[-4000:]
        stopped = [victim]
    victim = stopped[0]
    good = lab.exec(victim, f'cat {CONFIG}').stdout
    assert lab.exec(victim, f'cmp {CONFIG} {KEPT}', check=False).returncode == 0, 'emergency_stop kept no last-good copy'
    # The state a SIGKILL in the middle of AnQiCMS's own rewrite leaves: the first bytes only.
    lab.exec(victim, f'head -c 25 {KEPT} > {CONFIG}')
    run = playbook(lab, inventory, 'recover', {'opsguard_recover_instances': [f'{victim}:www']}, tmp)
    assert run.rc == 0, run.out[-4000:]
    assert f'{victim}:www {CONFIG} is not valid JSON' in run.out and f'config.json restored from the kept copy {KEPT}' in run.out
    assert lab.exec(victim, f'cat {CONFIG}').stdout == good
    assert unit_state(lab, victim)[:2] == ('active', 'enabled') and answers(lab, victim) and victim in serving(lab)

    # Recycle: the file is emptied while the instance runs (it read it at start), as if the stop killed it mid-write.
    target = next(h for h in serving(lab) if h != victim and lab.exec(h, f'test -f {KEPT}', check=False).returncode == 0)
    good = lab.exec(target, f'cat {CONFIG}').stdout
    lab.exec(target, f': > {CONFIG}')
    run = playbook(lab, inventory, 'recycle', {'opsguard_instances': [f'{target}:www']}, tmp)
    assert run.rc == 0, run.out[-4000:]
    [done] = run.report('recycle.json')['recycled']
    assert done['config_repaired'] is True and done['config_source']['kind'] == 'kept', done
    assert 'is empty' in done['config_problem'] and f'{target}:www  RECYCLED' in run.out and 'config.json RESTORED' in run.out
    assert lab.exec(target, f'cat {CONFIG}').stdout == good
    assert answers(lab, target) and target in serving(lab)


def test_cold_backup_on_stop_and_restore_on_recover(single_host, tmp):
    """One self-contained host: emergency_stop backup=true, a write lost afterwards, recover restore=latest brings it back.
    Every action (drain, stop, backup, restore, undrain) is recorded in the host's journal and POSTed to a webhook
    receiver on the lab bridge; the webhook's token appears in no output."""
    single, inv = single_host
    posted = single.exec('node1', "curl -s -m 10 -H 'Host: www.demo.test' -d 'title=kept&content=before+the+stop' http://127.0.0.1:8001/api/archive")
    ident = json.loads(posted.stdout)['data']['id']
    since = single.exec('node1', 'date +%s').stdout.strip()
    receiver = Receiver(single.names.gateway)
    token = os.urandom(12).hex()
    root = {'opsguard_backup_login_user': 'root', 'opsguard_restore_login_user': 'root',
            'opsguard_notify_url': receiver.url(f'/hook/{token}')}

    run = playbook(single, inv, 'emergency_stop', dict(root, opsguard_stop_instances=['node1:www'], opsguard_min_healthy=0,
                                                       opsguard_backup=True, opsguard_backup_verify=True), tmp)
    assert run.rc == 0, run.out[-4000:]
    stopped = run.report('emergency_stop.json')['stopped']
    assert [s['outcome'] for s in stopped] == ['stopped_gracefully'] and stopped[0]['backup_id'], stopped
    backups = single.exec('node1', 'ls /var/backups/anqicms/www').stdout.split()
    assert stopped[0]['backup_id'] in backups

    single.exec('node1', ['mysql', '-e', f'DELETE FROM anqicms_www.archives WHERE id = {int(ident)}'])
    run = playbook(single, inv, 'recover', dict(root, opsguard_restore='latest'), tmp)
    assert run.rc == 0, run.out[-4000:]
    count = single.exec('node1', ['mysql', '-N', '-B', '-e', f'SELECT COUNT(*) FROM anqicms_www.archives WHERE id = {int(ident)}'])
    assert count.stdout.strip() == '1', 'the restore did not bring the row back'
    assert unit_state(single, 'node1')[:2] == ('active', 'enabled')
    receiver.close()
    assert token not in run.out
    out = single.exec('node1', f'journalctl --no-pager -o json SYSLOG_IDENTIFIER=opsguard INSTANCE=www --since @{since}').stdout
    journal = [json.loads(line) for line in out.splitlines() if line.strip()]
    actions = ['drain', 'stop', 'backup', 'restore', 'undrain']
    outcomes = ['drained', 'stopped_gracefully', 'backed_up', 'restored', 'undrained']
    assert [(e['ACTION'], e['OUTCOME']) for e in journal] == list(zip(actions, outcomes)), journal
    assert journal[1]['REASON'] == 'emergency_stop: named in opsguard_stop_instances' and int(journal[1]['RSS_FREED']) > 0
    assert journal[1]['DIAGNOSTICS'].startswith('/var/lib/opsguard/diagnostics/') and journal[2]['BACKUP_ID'] == stopped[0]['backup_id']
    assert json.loads(journal[0]['DRAINS'])[0]['site'] == 'www'
    assert [r['action'] for r in receiver.records()] == actions
    assert all(path == f'/hook/{token}' for path, dummy in receiver.posts)
    assert receiver.records()[1]['rss_freed'] == int(journal[1]['RSS_FREED'])


def test_cold_backup_then_restore_playbook(single_host, tmp):
    """One self-contained host: a cold backup drains, stops, backs up, starts and undrains; after a change, restore.yml
    (check mode first) brings the data back through the same stop and start, and the instance serves again."""
    single, inv = single_host
    # The host of the previous test: its backups go, the instance must be serving again.
    single.exec('node1', 'rm -rf /var/backups/anqicms/www')
    assert unit_state(single, 'node1')[:2] == ('active', 'enabled') and drained(single) == [], 'the previous test left www stopped'
    posted = single.exec('node1', "curl -s -m 10 -H 'Host: www.demo.test' -d 'title=kept&content=before+the+backup' http://127.0.0.1:8001/api/archive")
    ident = int(json.loads(posted.stdout)['data']['id'])
    count_sql = ['mysql', '-N', '-B', '-e', f'SELECT COUNT(*) FROM anqicms_www.archives WHERE id = {ident}']
    pid_before = unit_state(single, 'node1')[2]

    # Cold backup through the lifecycle entry points: drained at nginx, stopped, backed up, started, undrained.
    run = playbook(single, inv, 'backup', {'opsguard_cold': True, 'opsguard_verify': True}, tmp)
    assert run.rc == 0, run.out[-4000:]
    assert 'node1 www 127.0.0.1:8001' in run.out, 'the cold backup did not drain the instance at nginx'
    state = unit_state(single, 'node1')
    assert state[:2] == ('active', 'enabled') and state[2] != pid_before, state
    assert drained(single) == []
    backups = single.exec('node1', 'ls /var/backups/anqicms/www').stdout.split()
    assert len(backups) == 1, backups

    single.exec('node1', ['mysql', '-e', f'DELETE FROM anqicms_www.archives WHERE id = {ident}'])
    assert single.exec('node1', count_sql).stdout.strip() == '0'

    # Inputs are checked before anything is touched.
    run = playbook(single, inv, 'restore', {'opsguard_restore_instances': ['node1:www'], 'opsguard_restore': 'yesterday'}, tmp)
    assert run.rc != 0 and 'opsguard_restore must be' in run.out and "got 'yesterday'" in run.out, run.out[-2000:]
    run = playbook(single, inv, 'restore', {'opsguard_restore_instances': ['node1:www'], 'opsguard_restore': 'latest',
                                            'restore_login_user': 'root'}, tmp)
    assert run.rc != 0 and 'restore_login_user was renamed opsguard_restore_login_user' in run.out, run.out[-2000:]
    run = playbook(single, inv, 'restore', {'opsguard_restore_instances': ['node1:nosuch'], 'opsguard_restore': 'latest'}, tmp)
    assert run.rc != 0 and 'opsguard_restore_instances names node1:nosuch' in run.out, run.out[-2000:]
    assert unit_state(single, 'node1')[:2] == ('active', 'enabled')

    # Check mode: the backup is verified and the plan shown; nothing stops, nothing is restored.
    pid = unit_state(single, 'node1')[2]
    run = playbook(single, inv, 'restore', {'opsguard_restore_instances': ['node1:www'], 'opsguard_restore': 'latest'}, tmp, check=True)
    assert run.rc == 0, run.out[-4000:]
    assert f'node1:www would restore backup {backups[0]}' in run.out, run.out[-3000:]
    assert unit_state(single, 'node1') == ('active', 'enabled', pid)
    assert single.exec('node1', count_sql).stdout.strip() == '0'

    run = playbook(single, inv, 'restore', {'opsguard_restore_instances': ['node1:www'], 'opsguard_restore': 'latest'}, tmp)
    assert run.rc == 0, run.out[-4000:]
    assert single.exec('node1', count_sql).stdout.strip() == '1', 'the restore did not bring the row back'
    [restored] = run.report('restore.json')['restored']
    assert (restored['host'], restored['name'], restored['backup_id']) == ('node1', 'www', backups[0]), restored
    assert restored['undrained'] == [{'proxy': 'node1', 'site': 'www', 'backend': '127.0.0.1:8001'}], restored
    assert unit_state(single, 'node1')[:2] == ('active', 'enabled')
    assert drained(single) == []
    via_nginx = single.exec('node1', "curl -s -m 10 -o /dev/null -w '%{http_code}' -H 'Host: www.demo.test' http://127.0.0.1/")
    assert via_nginx.stdout.strip() == '200', via_nginx.stdout


def test_recycle_restores_config_from_the_newest_verified_backup(single_host, tmp):
    """No kept copy, a backup: the config.json a kill cut short is restored from the newest verified backup, the
    instance is recycled (min_healthy 0: the only one) and serves."""
    single, inv = single_host
    backups = single.exec('node1', 'ls /var/backups/anqicms/www', check=False).stdout.split()
    if not backups:  # run alone (the previous test leaves one): a verified backup of its own
        run = playbook(single, inv, 'backup', {'opsguard_verify': True}, tmp)
        assert run.rc == 0, run.out[-4000:]
        backups = single.exec('node1', 'ls /var/backups/anqicms/www').stdout.split()
    assert backups, 'no backup of www to restore config.json from'
    good = single.exec('node1', 'cat /opt/anqicms/www/config.json').stdout
    single.exec('node1', 'rm -f /var/lib/opsguard/config/opt_anqicms_www.json; head -c 30 /opt/anqicms/www/config.json > /tmp/cut; '
                         'cat /tmp/cut > /opt/anqicms/www/config.json')
    run = playbook(single, inv, 'recycle', {'opsguard_instances': ['node1:www'], 'opsguard_min_healthy': 0}, tmp)
    assert run.rc == 0, run.out[-4000:]
    [done] = run.report('recycle.json')['recycled']
    assert done['config_repaired'] is True and done['config_source']['kind'] == 'backup', done
    assert done['config_source']['id'] == sorted(backups)[-1], (done, backups)
    assert json.loads(single.exec('node1', 'cat /opt/anqicms/www/config.json').stdout) == json.loads(good)
    assert unit_state(single, 'node1')[:2] == ('active', 'enabled') and drained(single) == []
    via_nginx = single.exec('node1', "curl -s -m 10 -o /dev/null -w '%{http_code}' -H 'Host: www.demo.test' http://127.0.0.1/")
    assert via_nginx.stdout.strip() == '200', via_nginx.stdout
