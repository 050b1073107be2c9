# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet playbooks' backup paths on a 1-host self-contained fleet (MariaDB, nginx and AnQiCMS www on node1),
deployed once (lab ``<OPSGUARD_LAB_NAME>-pb1``).

In file order: emergency_stop backup=true takes a cold backup and recover restore=latest brings back a row deleted
after the stop; then, with the backups of that test removed, a cold backup drains, stops, backs up, starts and
undrains, and restore.yml (check mode first) brings back a row deleted after the backup; recycle restores a
config.json cut short from the newest verified backup; then emergency_stop does not stop the instance when the proxy
does not answer the reload of the drain, and a host lost right after its stop leaves a record recover starts it
from, and a second stop keeps what the first still has to undo; last, the entry point start never runs a second
process of an instance without unit. A file of its own (not with test_playbooks.py, which uses the
shared demo topology), so that pytest-xdist can run it next to that group.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import sys
import time
from typing import Iterator

import pytest

import fleet
import standin
from fleet_playbooks import REPO, Run, drained, playbook, unit_state
from ansible_collections.opsguard.anqicms.tests.utils.lab import running_fleet
from ansible_collections.opsguard.anqicms.tests.utils.wait import poll
from ansible_collections.opsguard.anqicms.tests.utils.webhook_receiver import Receiver

sys.path.insert(0, str(REPO / 'tests' / 'demo'))
import topology  # noqa: E402  pylint: disable=wrong-import-position


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


def test_no_stop_while_nginx_may_still_send_requests(single_host, tmp):
    """The proxy does not answer the reload of the drain (that one module run, tests/lab/lossy_ssh.py) and answers
    every task after it: emergency_stop must not stop the instance, since nginx may still send it requests, and must
    say so; the backend's drain mark stays, and the record written before the drain lets recover undrain it without
    touching the running instance."""
    single, inv = single_host
    before, run, failed = stop_www_losing(single, inv, tmp, 'the reload', 'reloaded')
    assert failed['error'].startswith("failed at task 'Drain | the proxy answered the mark, the reload and the wait'"), failed
    assert 'the proxy did not answer while draining www@127.0.0.1:8001 (nginx may still send it requests)' in failed['error'], failed
    assert unit_state(single, 'node1') == before, 'the instance was stopped although nginx was never told'
    assert 'TASK [opsguard.anqicms.app : Stop | graceful stop of www]' not in run.out
    assert drained(single) == ['www@127.0.0.1:8001']
    assert pending_record(single) == ('pending', True, [{'proxy': 'node1', 'site': 'www', 'backend': '127.0.0.1:8001'}])
    run = playbook(single, inv, 'recover', {}, tmp)
    assert run.rc == 0, run.out[-3000:]
    assert drained(single) == [] and unit_state(single, 'node1') == before, 'recover did not just undrain the running instance'
    assert pending_record(single) is None


def test_a_host_lost_after_its_stop_leaves_a_record_recover_starts_from(single_host, tmp):
    """node1 does not answer the disable of the unit that follows the graceful stop (that one module run): the run
    fails for node1 with the instance stopped. The record written before the drain is on the host, so recover starts
    the instance again, keeps its unit enabled and puts it back into rotation."""
    single, inv = single_host
    before, dummy, failed = stop_www_losing(single, inv, tmp, 'the disable', 'anqicms-www.service')
    assert failed['error'].startswith("failed at task 'Stop | the host answered the disable: www'"), failed
    assert 'became unreachable while keeping www disabled (it is stopped)' in failed['error'], failed
    assert unit_state(single, 'node1')[:2] == ('inactive', 'enabled') and drained(single) == ['www@127.0.0.1:8001']
    assert pending_record(single) == ('pending', True, [{'proxy': 'node1', 'site': 'www', 'backend': '127.0.0.1:8001'}])

    run = playbook(single, inv, 'recover', {}, tmp)
    assert run.rc == 0, run.out[-3000:]
    assert 'node1:www has a record its emergency_stop never completed (outcome pending' in run.out, run.out[-3000:]
    after = unit_state(single, 'node1')
    assert after[:2] == ('active', 'enabled') and after[2] != before[2] and drained(single) == [], after
    assert pending_record(single) is None
    via_nginx = single.exec('node1', "curl -s -m 10 -o /dev/null -w '%{http_code}' -H 'Host: www.demo.test' http://127.0.0.1/")
    assert via_nginx.stdout.strip() == '200', via_nginx.stdout


def stop_www_losing(single: fleet.Fleet, inv: str, tmp: pathlib.Path, what: str, match: str) -> tuple[tuple[str, str, str], Run, dict]:
    """emergency_stop of node1:www (serving, enabled, not drained) while node1 does not answer the one systemd_service
    module run whose arguments hold ``match`` (tests/lab/lossy_ssh.py): (www's unit state before, the run, its failed
    report entry)."""
    before = unit_state(single, 'node1')
    assert before[:2] == ('active', 'enabled') and drained(single) == [], before
    lose = {'host': single.host('node1').address, 'match': ["module_fqn='ansible.modules.systemd_service'", match]}
    run = playbook(single, inv, 'emergency_stop', {'opsguard_stop_instances': ['node1:www'], 'opsguard_min_healthy': 0},
                   tmp, lose=lose)
    lost = (tmp / 'lossy_ssh.log').read_text(encoding='utf-8').splitlines() if (tmp / 'lossy_ssh.log').exists() else []
    assert len(lost) == 1, f'{what} was not the one module run lost: {lost}\n' + run.out[-3000:]
    assert run.rc != 0, run.out[-3000:]
    [failed] = run.report('emergency_stop.json')['stopped']
    assert failed['outcome'] == 'failed', failed
    return before, run, failed


def pending_record(single: fleet.Fleet) -> tuple[str, bool, list[dict]] | None:
    """(outcome, unit_was_enabled, drains) of www's emergency_stop record on node1; None when there is none."""
    out = single.exec('node1', 'cat /var/lib/opsguard/emergency_stop/opt_anqicms_www.json 2>/dev/null || true').stdout
    if not out.strip():
        return None
    record = json.loads(out)
    return record['outcome'], record['unit_was_enabled'], record['drains']


def test_a_second_stop_keeps_what_the_first_has_to_undo(single_host, tmp):
    """www is stopped (its unit was enabled), started again by hand with its unit still disabled, and stopped again:
    the record must still say the unit was enabled, so recover brings it back enabled."""
    single, inv = single_host
    assert unit_state(single, 'node1')[:2] == ('active', 'enabled') and drained(single) == []
    stop = {'opsguard_stop_instances': ['node1:www'], 'opsguard_min_healthy': 0}
    run = playbook(single, inv, 'emergency_stop', stop, tmp)
    assert run.rc == 0, run.out[-3000:]
    assert unit_state(single, 'node1')[:2] == ('inactive', 'disabled') and pending_record(single)[:2] == ('stopped_gracefully', True)
    single.exec('node1', 'systemctl start anqicms-www.service')
    assert unit_state(single, 'node1')[:2] == ('active', 'disabled')

    run = playbook(single, inv, 'emergency_stop', stop, tmp)
    assert run.rc == 0, run.out[-3000:]
    assert [s['outcome'] for s in run.report('emergency_stop.json')['stopped']] == ['stopped_gracefully'], run.out[-3000:]
    assert pending_record(single)[:2] == ('stopped_gracefully', True), 'the second stop forgot that the unit was enabled'
    run = playbook(single, inv, 'recover', {}, tmp)
    assert run.rc == 0, run.out[-3000:]
    assert unit_state(single, 'node1')[:2] == ('active', 'enabled') and drained(single) == [] and pending_record(single) is None


def test_start_without_unit_never_runs_a_second_process(single_host, tmp):
    """The app role's entry point start for an instance without unit (as recover runs it from a record), while that
    instance runs: nothing is started (a second anqicms of the same directory would find its port taken, or kill the
    first); once it is gone, the same start brings it up."""
    single, inv = single_host
    directory, port = '/srv/manual', 8105
    host = single.host('node1')
    standin.deploy(lambda cmd: single.exec(host, cmd, check=False), lambda src, dst: single.put(host, src, dst),
                   directory, archive=standin.build())
    single.put(host, _text_file(tmp, json.dumps({'server': {'env': 'production', 'port': port, 'log_level': 'error'}})),
               f'{directory}/config.json')
    play = tmp / 'start_manual.yml'
    play.write_text(json.dumps([{
        'name': 'Start an instance without unit', 'hosts': 'node1', 'gather_facts': False,
        'tasks': [{'name': 'Entry point start', 'ansible.builtin.include_role': {'name': 'opsguard.anqicms.app', 'tasks_from': 'start'},
                   'vars': {'app_lifecycle_instance': {'name': directory, 'directory': directory, 'unit': None, 'port': None,
                                                       'exe': f'{directory}/anqicms', 'host': 'node1'}}}]}]), encoding='utf-8')
    log = f'{directory}/running.log'

    def pids() -> list[str]:
        found = single.exec('node1', f'for p in /proc/[0-9]*; do [ "$(readlink $p/exe)" = {directory}/anqicms ] && echo ${{p#/proc/}}; done; true')
        return found.stdout.split()

    def serving() -> bool:
        return single.exec('node1', f'curl -s -m 5 -o /dev/null -w "%{{http_code}}" http://127.0.0.1:{port}/install').stdout == '200'

    try:
        single.ssh(host, f'cd {directory} && setsid -f ./anqicms >> running.log 2>&1 < /dev/null')
        assert poll(serving, 20, 0.2), single.exec('node1', f'cat {log}').stdout
        [first] = pids()
        starts = single.exec('node1', f'grep -c start-up: {log}').stdout.strip()

        run = playbook(single, inv, play, {}, tmp)
        assert run.rc == 0, run.out[-3000:]
        assert re.search(r'node1\s*: ok=\d+\s+changed=0 ', run.out), run.out[-2000:]
        time.sleep(1)  # a second process would have logged its start by now
        text = single.exec('node1', f'cat {log}').stdout
        assert 'already in use' not in text and single.exec('node1', f'grep -c start-up: {log}').stdout.strip() == starts, text
        assert pids() == [first] and serving()

        single.exec('node1', f'kill {first}')
        assert poll(lambda: pids() == [], 20, 0.2), pids()
        run = playbook(single, inv, play, {}, tmp)
        assert run.rc == 0, run.out[-3000:]
        assert re.search(r'node1\s*: ok=\d+\s+changed=1 ', run.out), run.out[-2000:]
        assert poll(serving, 20, 0.2), single.exec('node1', f'cat {log}').stdout
        assert len(pids()) == 1 and pids() != [first]
    finally:
        single.exec('node1', f'for p in $(pgrep -x anqicms); do [ "$(readlink /proc/$p/exe)" = {directory}/anqicms ] && kill -9 $p; '
                             f'done; rm -rf {directory}', check=False)


def _text_file(tmp: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp / 'upload.txt'
    path.write_text(text, encoding='utf-8')
    return path
