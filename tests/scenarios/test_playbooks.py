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
and the recycle limit refuses -> an instance that cannot start stays out of rotation and fails the run -> so does one
whose host the control node loses as the start begins (its health unknown) -> a config.json
cut short or emptied as by a kill mid-rewrite is put back by recover and by recycle before the start.
The backup paths of these playbooks run on one self-contained host: test_playbooks_single_host.py.
Every outcome is confirmed from outside the playbook (systemd on the hosts, nginx state, the reports).
"""
from __future__ import annotations

import json
import pathlib
import re
import sys
import time
import xml.etree.ElementTree as ET
from typing import Any

import pytest

import fleet
from fleet_playbooks import REPO, drained, playbook, unit_state

sys.path.insert(0, str(REPO / 'tests' / 'demo'))
import topology  # noqa: E402  pylint: disable=wrong-import-position
import traffic  # noqa: E402  pylint: disable=wrong-import-position

APPS = ['node2', 'node3', 'node4']
HOSTS = ['node1'] + APPS   # demo_site's hosts


@pytest.fixture(scope='module')
def lab(demo_site: Any) -> fleet.Fleet:
    demo_site.ready()
    assert [h.name for h in demo_site.lab.hosts] == HOSTS
    return demo_site.lab


@pytest.fixture(scope='module')
def inventory(demo_site: Any, lab: fleet.Fleet) -> str:
    del lab
    return demo_site.inventory


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
    assert lab.host(cut[0]).address in error and 'has no attribute' not in error, outcome
    # ... found at its first task, the copy of config.json, before anything is drained or stopped.
    assert "found at task 'Stop | the host answered the copy: www'" in error, outcome
    assert unit_state(lab, first)[0] == 'inactive'
    assert unit_state(lab, cut[0])[0] == 'active'
    assert f"{cut[0]}:www  FAILED: unreachable" in run.out
    assert run.rc != 0 and f"Not stopped: {cut[0]}:www (unreachable" in run.out
    # Nothing was done for a host that did not answer its first task: its backend was not drained either, and it
    # serves again as soon as its network is back.
    backend = f'{lab.host(cut[0]).address}:8001'
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


def test_recycle_host_lost_during_its_start_stays_out_of_rotation(lab, inventory, tmp):
    """The control node loses the host right after the stop, as the start begins: the start and the health check are
    unreachable, so the backend must stay drained (nginx could still reach the host; its health is unknown) and the
    run fails with the connection error. Put back by hand afterwards, as an operator would."""
    up = serving(lab)
    assert len(up) >= 2, up
    history = {h: lab.exec(h, 'test -f /var/lib/opsguard/recycle/opt_anqicms_www.json', check=False).returncode == 0 for h in up}
    target = next((h for h in up if not history[h]), up[0])
    backend = f'{lab.host(target).address}:8001'
    cut: list[str] = []

    def on_line(line: str) -> None:
        if not cut and line.startswith('TASK [opsguard.anqicms.app : Start | start the unit: www]'):
            lab.cut(target)
            cut.append(target)

    try:
        run = playbook(lab, inventory, 'recycle', {'opsguard_instances': [f'{target}:www'], 'opsguard_health_timeout': 10},
                       tmp, on_line=on_line, shared_ssh=False)
    finally:
        for host in cut:
            lab.heal(host)
    assert cut, 'the run never reached the start'
    assert run.rc != 0, run.out[-3000:]
    [failed] = run.report('recycle.json')['recycled']
    assert failed['outcome'] == 'failed', failed
    assert failed['error'].startswith("unreachable (found at task 'Start | the host answered the health check: www')"), failed
    assert lab.host(target).address in failed['error'], failed
    assert f'www@{backend}' in drained(lab), 'a host lost during its health check went back into rotation'
    assert 'TASK [opsguard.anqicms.proxy : Undrain' not in run.out
    # Back by hand: start the unit, then the proxy role's undrain.
    lab.exec(target, 'systemctl start anqicms-www.service', timeout=60)
    wait_answers(lab, target)
    run = playbook(lab, inventory, REPO / 'tests' / 'roles' / 'drain.yml',
                   {'drain_action': 'undrain', 'proxy_drain_site': 'www', 'proxy_drain_backend': backend}, tmp)
    assert run.rc == 0, run.out[-3000:]
    assert target in serving(lab), drained(lab)


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
