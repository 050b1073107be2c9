"""opsguard.anqicms.graceful_stop on the test fleet, against the AnQiCMS stand-in and a real MariaDB under systemd.

node1 runs two stand-in instances (/opt/gs-a on 8101, /opt/gs-b on 8102), started like start.sh does but
each from its own directory. node3's MariaDB is stopped through systemd and by PID.
Run: OPSGUARD_LAB_NAME=gs .venv/bin/python -m pytest tests/scenarios/test_graceful_stop.py
"""
from __future__ import annotations

import json
import shlex
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

import standin
from ansible_collections.opsguard.anqicms.tests.utils.wait import poll
from ansible_collections.opsguard.anqicms.tests.utils.webhook_receiver import BlackHole, Receiver

MODULE = 'opsguard.anqicms.graceful_stop'
INSTANCES = {'a': ('/opt/gs-a', 8101), 'b': ('/opt/gs-b', 8102)}
CRON_FILE = '/etc/cron.d/gs-a'


def _status(url: str, timeout: float = 5) -> int | str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError) as exc:
        return type(exc).__name__


def _wait(predicate, timeout: float = 20.0, interval: float = 0.1):
    return poll(predicate, timeout, interval)


@pytest.fixture(scope='module')
def archive():
    return standin.build()


@pytest.fixture
def node1(lab_fleet, archive):
    """node1 with both instance directories deployed; every stand-in process and the cron file removed afterwards."""
    fleet = lab_fleet
    host = fleet.host('node1')
    fleet.exec(host, "pkill -KILL -f '^(/opt/gs-[ab]/|\\./)anqicms' || true; rm -f %s" % CRON_FILE)
    for directory, dummy in INSTANCES.values():
        standin.deploy(lambda cmd, h=host: fleet.exec(h, cmd, check=False), lambda src, dst, h=host: fleet.put(h, src, dst),
                       directory, archive=archive)
    yield fleet, host
    fleet.exec(host, "pkill -KILL -f 'anqicms -port 810[12]' || true; pkill -KILL -f '[c]webp_linux_amd64' || true; "
                     "rm -f %s /run/gs-*.pid" % CRON_FILE, check=False)


def start(fleet, host, name: str, **env: str) -> str:
    """Start an instance over SSH (own session, like start.sh); return its base URL once it answers."""
    directory, port = INSTANCES[name]
    variables = ' '.join('%s=%s' % (k, shlex.quote(v)) for k, v in sorted(env.items()))
    if env:
        variables = 'ANQICMS_STANDIN_HOOKS=1 ' + variables
    # setsid -f: the instance leaves the SSH session at once (a plain `nohup ... &` keeps the session open).
    fleet.ssh(host, 'cd %s && env %s setsid -f ./anqicms -port %d >> running.log 2>&1 < /dev/null' % (directory, variables, port))
    base = 'http://%s:%d' % (host.address, port)
    assert _wait(lambda: _status(base + '/install') == 200), '%s did not come up on %s' % (directory, base)
    return base


def pid_of(fleet, host, name: str) -> int:
    directory, dummy = INSTANCES[name]
    out = fleet.exec(host, "for p in $(pgrep -x anqicms); do [ \"$(readlink /proc/$p/exe)\" = %s/anqicms ] && echo $p; done; true"
                     % directory).stdout.split()
    assert len(out) == 1, 'expected one process of %s, found %s' % (directory, out)
    return int(out[0])


def gone(fleet, host, pids: list) -> bool:
    """True when none of the PIDs is a live (non-zombie) process on the host."""
    out = fleet.exec(host, 'ps -o stat= -p %s || true' % ','.join(str(p) for p in pids)).stdout.split()
    return all(stat.startswith('Z') for stat in out)


def test_stop_one_instance_by_exe_while_the_other_keeps_serving(node1):
    fleet, host = node1
    base_a, base_b = start(fleet, host, 'a'), start(fleet, host, 'b')
    pid_a = pid_of(fleet, host, 'a')
    fleet.exec(host, 'echo "0 0 31 2 * root /opt/gs-a/start.sh" > %s' % CRON_FILE)
    args = {'exe': '/opt/gs-a/anqicms', 'drain': True, 'drain_timeout': 5, 'timeout': 10, 'diagnostics_dir': '/var/log/gs-stops'}

    plan = fleet.run_module(host, MODULE, args, check=True)
    assert plan.get('changed') and plan['outcome'] == 'would_stop', plan
    assert plan['identity']['pid'] == pid_a and plan['ports'] == [8101]
    assert _status(base_a + '/install') == 200, 'check mode touched instance a'
    assert fleet.exec(host, 'ls /var/log/gs-stops 2>/dev/null | wc -l').stdout.strip() == '0'

    result = fleet.run_module(host, MODULE, args)
    assert not result.get('failed'), result
    assert result['changed'] and result['outcome'] == 'stopped_gracefully'
    assert result['identity']['pid'] == pid_a and result['port_released'] is True
    assert [s['signal'] for s in result['signals']] == ['SIGTERM']
    assert {'type': 'cron', 'file': CRON_FILE, 'line_number': 1, 'line': '0 0 31 2 * root /opt/gs-a/start.sh'} in result['watchdogs']
    assert _status(base_a + '/install') != 200
    assert _status(base_b + '/install') == 200, 'instance b was affected'
    pid_of(fleet, host, 'b')
    diag = json.loads(fleet.exec(host, 'cat %s' % shlex.quote(result['diagnostics_path'])).stdout)
    assert diag['identity']['pid'] == pid_a and 'VmRSS' in diag['status'] and 'Rss' in diag['smaps_rollup']
    assert any(c['local_port'] == 8101 for c in diag['connections'])

    again = fleet.run_module(host, MODULE, args)
    assert not again.get('changed') and again['outcome'] == 'already_stopped' and again['signals'] == []
    assert _status(base_b + '/install') == 200


def test_pidfiles_that_do_not_describe_the_instance_are_refused(node1):
    fleet, host = node1
    start(fleet, host, 'a')
    base_b = start(fleet, host, 'b')
    pid_a, pid_b = pid_of(fleet, host, 'a'), pid_of(fleet, host, 'b')
    fleet.exec(host, 'echo %d > /run/gs-a.pid' % pid_b)
    result = fleet.run_module(host, MODULE, {'pidfile': '/run/gs-a.pid', 'exe': '/opt/gs-a/anqicms'})
    assert result.get('failed') and 'nothing signalled' in result['msg'] and result['msg'].startswith('node1'), result
    sleeper = fleet.exec(host, 'setsid sleep 300 > /dev/null 2>&1 < /dev/null & echo $!').stdout.strip()
    fleet.exec(host, 'echo %s > /run/gs-a.pid' % sleeper)
    result = fleet.run_module(host, MODULE, {'pidfile': '/run/gs-a.pid', 'name': 'anqicms'})
    assert result.get('failed') and 'its name is sleep' in result['msg'], result
    assert fleet.exec(host, 'kill -0 %s' % sleeper, check=False).returncode == 0, 'the unrelated process was signalled'
    fleet.exec(host, 'kill %s' % sleeper)
    assert pid_of(fleet, host, 'a') == pid_a and pid_of(fleet, host, 'b') == pid_b
    assert _status(base_b + '/install') == 200


@pytest.mark.parametrize('env,timeout,outcome,signals', [
    ({'STANDIN_IGNORE_TERM': '1'}, 1, 'stopped_forced', ['SIGTERM', 'SIGKILL']),
    ({'STANDIN_EXIT_DELAY_MS': '2000'}, 10, 'stopped_gracefully', ['SIGTERM']),
    ({'STANDIN_CHILDREN': '3'}, 10, 'stopped_gracefully', ['SIGTERM'] * 4),
], ids=['term-ignored', 'slow-exit', 'children'])
def test_escalation_and_process_tree(node1, env, timeout, outcome, signals):
    fleet, host = node1
    start(fleet, host, 'a', **env)
    if 'STANDIN_CHILDREN' in env:
        assert _wait(lambda: len(fleet.exec(host, "pgrep -f '[c]webp_linux_amd64' || true").stdout.split()) == 3)
    result = fleet.run_module(host, MODULE, {'port': 8101, 'exe': '/opt/gs-a/anqicms', 'timeout': timeout})
    assert not result.get('failed'), result
    assert result['outcome'] == outcome and [s['signal'] for s in result['signals']] == signals
    assert result['port_released'] is True
    assert len(result['pids']) == len(signals) - (1 if outcome == 'stopped_forced' else 0)
    assert _wait(lambda: gone(fleet, host, result['pids']), timeout=5), 'part of the tree is still running'


@pytest.mark.parametrize('drain', [True, False], ids=['drain-on', 'drain-off'])
def test_slow_request_completes_only_when_draining(node1, drain):
    fleet, host = node1
    base = start(fleet, host, 'a', STANDIN_EXIT_DELAY_MS='0')
    outcome = {}

    def client() -> None:
        # Long enough to still be in flight when ansible-playbook has started and reaches the module.
        outcome['status'] = _status(base + '/__test/sleep?seconds=10', timeout=30)

    thread = threading.Thread(target=client)
    thread.start()
    in_flight = _wait(lambda: fleet.exec(host, "ss -Htn state established '( sport = :8101 )' | wc -l").stdout.strip() != '0',
                      timeout=10, interval=0.05)
    assert in_flight, 'the slow request never reached the instance'
    result = fleet.run_module(host, MODULE, {'exe': '/opt/gs-a/anqicms', 'drain': drain, 'drain_timeout': 25, 'timeout': 5})
    thread.join(40)
    assert not result.get('failed'), result
    assert result['outcome'] == 'stopped_gracefully'
    if drain:
        assert result['drain']['connections_at_start'] == 1 and result['drain']['connections_left'] == 0, result['drain']
        assert outcome['status'] == 200, outcome
    else:
        assert result['drain'] == {'enabled': False}
        assert outcome['status'] != 200, 'the in-flight request was not cut: %s' % outcome


def journal_records(fleet, host, reason: str) -> list:
    """The action records on the host whose REASON is ``reason`` (journalctl -o json, one object a line)."""
    out = fleet.exec(host, ['journalctl', '--no-pager', '-o', 'json', 'SYSLOG_IDENTIFIER=opsguard', 'REASON=' + reason]).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_the_stop_is_recorded_in_the_journal_and_at_the_webhook(node1):
    """The stop writes one record to the host's journald and POSTs it to a receiver on the lab bridge; the token in the
    URL reaches the receiver and nowhere else."""
    fleet, host = node1
    start(fleet, host, 'a')
    pid_a = pid_of(fleet, host, 'a')
    reason = 'scenario-%s' % uuid.uuid4().hex[:12]
    token = uuid.uuid4().hex
    receiver = Receiver(fleet.names.gateway)
    try:
        result = fleet.run_module(host, MODULE, {'exe': '/opt/gs-a/anqicms', 'timeout': 10, 'diagnostics_dir': '/var/log/gs-stops',
                                                 'record_instance': 'gs-a', 'record_reason': reason,
                                                 'notify_url': receiver.url('/hook?token=' + token)})
    finally:
        receiver.close()
    assert not result.get('failed') and result['outcome'] == 'stopped_gracefully', result
    recorded = result['recorded']
    assert recorded['journal'] is True and recorded['webhook'] == 'delivered' and recorded['webhook_attempts'] == 1, recorded
    assert token not in json.dumps(result)
    assert _wait(lambda: len(journal_records(fleet, host, reason)) == 1, timeout=30), 'no journal record with REASON=' + reason
    [entry] = journal_records(fleet, host, reason)
    assert (entry['ACTION'], entry['INSTANCE'], entry['OUTCOME']) == ('stop', 'gs-a', 'stopped_gracefully'), entry
    assert entry['PID'] == str(pid_a) and entry['SIGNAL'] == 'SIGTERM' and entry['EXE'] == '/opt/gs-a/anqicms'
    assert int(entry['RSS_FREED']) == result['rss_freed_bytes'] > 0
    assert entry['DIAGNOSTICS'] == result['diagnostics_path'] and entry['PORTS'] == '8101' and entry['PRIORITY'] == '5'
    assert entry['_HOSTNAME'] == entry['HOST'] and entry['MESSAGE'].startswith('stop of gs-a on ')
    [(path, body)] = receiver.posts
    assert path == '/hook?token=' + token
    [alert] = body['alerts']
    assert alert['labels']['instance'] == 'gs-a' and alert['labels']['outcome'] == 'stopped_gracefully'
    assert body['record']['rss_freed'] == result['rss_freed_bytes'] and body['record']['reason'] == reason
    assert body['record']['diagnostics'] == result['diagnostics_path'] and body['record']['pid'] == pid_a


def test_a_webhook_that_never_answers_does_not_hold_the_stop(node1):
    """A receiver that accepts connections and never answers: the stop succeeds, the journal has the record, the
    webhook is given up after the deadline (measured inside the module, so a busy machine cannot fake it)."""
    fleet, host = node1
    base_a = start(fleet, host, 'a')
    reason = 'scenario-%s' % uuid.uuid4().hex[:12]
    hole = BlackHole(fleet.names.gateway)
    try:
        result = fleet.run_module(host, MODULE, {'exe': '/opt/gs-a/anqicms', 'timeout': 10, 'record_reason': reason,
                                                 'notify_url': hole.url('/hook')})
    finally:
        hole.close()
    assert not result.get('failed') and result['outcome'] == 'stopped_gracefully', result
    assert _status(base_a + '/install') != 200
    recorded = result['recorded']
    assert recorded['journal'] is True and recorded['webhook'] == 'failed', recorded
    assert 'timed out' in recorded['webhook_error'] or 'no answer' in recorded['webhook_error'], recorded
    assert 1 <= recorded['webhook_attempts'] <= 3 and recorded['seconds'] < 7, recorded
    assert _wait(lambda: len(journal_records(fleet, host, reason)) == 1, timeout=30)
    assert journal_records(fleet, host, reason)[0]['INSTANCE'] == '/opt/gs-a'


def _mariadb_log(fleet, host, since: float) -> str:
    out = fleet.exec(host, 'journalctl -u mariadb.service --since @%d -o cat --no-pager 2>/dev/null; '
                           'cat /var/log/mysql/error.log 2>/dev/null; true' % int(since)).stdout
    return out


def test_mariadb_stopped_by_unit_and_by_pid(lab_fleet):
    fleet = lab_fleet
    host = fleet.host('node3')
    fleet.exec(host, 'systemctl start mariadb.service')
    fleet.exec(host, "mysql -e 'CREATE DATABASE IF NOT EXISTS gs; CREATE TABLE IF NOT EXISTS gs.t (i INT) ENGINE=InnoDB; "
                     "INSERT INTO gs.t VALUES (1)'")
    rows = int(fleet.exec(host, "mysql -N -e 'SELECT COUNT(*) FROM gs.t'").stdout)
    try:
        for how in ('systemd_unit', 'pid'):
            since = time.time() - 1
            main_pid = int(fleet.exec(host, 'systemctl show -p MainPID --value mariadb.service').stdout)
            args = {'systemd_unit': 'mariadb.service'} if how == 'systemd_unit' else {'pid': main_pid, 'exe': '/usr/sbin/mariadbd'}
            result = fleet.run_module(host, MODULE, dict(args, timeout=120))
            assert not result.get('failed'), result
            assert result['outcome'] == 'stopped_gracefully' and result['identity']['pid'] == main_pid, result
            assert any(w['type'] == 'systemd' and w['unit'] == 'mariadb.service' for w in result['watchdogs'])
            assert _wait(lambda: fleet.exec(host, 'systemctl is-active mariadb.service', check=False).stdout.strip()
                         in ('inactive', 'failed'), timeout=30)
            log = _mariadb_log(fleet, host, since)
            assert 'Shutdown complete' in log, log[-2000:]
            restart = time.time() - 1
            fleet.exec(host, 'systemctl start mariadb.service', timeout=120)
            log = _mariadb_log(fleet, host, restart)
            assert 'crash recovery' not in log.lower() and 'not shut down normally' not in log, log[-2000:]
            assert int(fleet.exec(host, "mysql -N -e 'SELECT COUNT(*) FROM gs.t'").stdout) == rows
        again = fleet.run_module(host, MODULE, {'systemd_unit': 'mariadb.service'}, check=True)
        assert again['outcome'] == 'would_stop' and again['signals'] == []
        assert fleet.exec(host, 'systemctl is-active mariadb.service', check=False).stdout.strip() == 'active'
    finally:
        fleet.exec(host, 'systemctl start mariadb.service; mysql -e "DROP DATABASE IF EXISTS gs"', check=False, timeout=120)


def test_inactive_unit_is_already_stopped(lab_fleet):
    fleet = lab_fleet
    host = fleet.host('node2')
    fleet.exec(host, 'systemctl stop nginx.service')
    try:
        result = fleet.run_module(host, MODULE, {'systemd_unit': 'nginx.service'})
        assert not result.get('failed'), result
        assert not result['changed'] and result['outcome'] == 'already_stopped'
        missing = fleet.run_module(host, MODULE, {'systemd_unit': 'no-such-unit.service'})
        assert missing.get('failed') and 'no-such-unit.service' in missing['msg'], missing
    finally:
        fleet.exec(host, 'systemctl start nginx.service', check=False)
