# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The record each module writes of its action (journal entry read back from a fake journald, webhook body from a real
local HTTP server), and the action_record module the playbooks use for drains."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.opsguard.anqicms.plugins.module_utils import record
from ansible_collections.opsguard.anqicms.plugins.modules import action_record, backup, graceful_stop, restore
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.record_helpers import FakeJournal, Receiver, closed_port

TOKEN = 'tok-9f8e7d6c5b4a'
SLEEP = shutil.which('sleep') or '/bin/sleep'


@pytest.fixture
def journal(monkeypatch):
    fake = FakeJournal()
    monkeypatch.setattr(record, 'JOURNAL_SOCKET', fake.path)
    yield fake
    fake.close()


@pytest.fixture
def hook():
    server = Receiver([200])
    yield server
    server.close()


def drain_args(**extra):
    return dict({'action': 'drain', 'instance': 'www', 'outcome': 'drained', 'reason': 'node2 critical',
                 'fields': {'proxy': 'node1', 'backend': '10.0.0.12:8001', 'site': 'www'}}, **extra)


def test_action_record_writes_the_journal_and_the_webhook(run_main, journal, hook):
    result = run_main(action_record.main, drain_args(notify_url=hook.url('/alerts?token=' + TOKEN)))
    assert not result.get('failed') and result['changed'] is False, result
    assert result['recorded']['journal'] is True and result['recorded']['webhook'] == 'delivered'
    assert TOKEN not in json.dumps(result)
    [entry] = journal.entries()
    assert (entry['ACTION'], entry['INSTANCE'], entry['OUTCOME'], entry['REASON']) == ('drain', 'www', 'drained', 'node2 critical')
    assert entry['PROXY'] == 'node1' and entry['BACKEND'] == '10.0.0.12:8001' and entry['SYSLOG_IDENTIFIER'] == 'opsguard'
    [(dummy, path, body, dummy2)] = hook.requests
    assert path == '/alerts?token=' + TOKEN
    assert body['alerts'][0]['labels']['action'] == 'drain' and body['record']['proxy'] == 'node1'


def test_action_record_in_check_mode_records_nothing(run_main, journal, hook):
    result = run_main(action_record.main, drain_args(notify_url=hook.url()), check=True)
    assert not result.get('failed') and result['recorded']['journal'] is False and result['recorded']['webhook'] == 'off'
    assert journal.entries() == [] and hook.requests == []


def test_a_receiver_that_is_down_does_not_fail_the_task(run_main, journal):
    started = time.monotonic()
    result = run_main(action_record.main, drain_args(notify_url='http://127.0.0.1:%d/%s' % (closed_port(), TOKEN)))
    assert time.monotonic() - started < record.DEADLINE + 1
    assert not result.get('failed') and result['recorded']['webhook'] == 'failed'
    assert 'cannot reach the receiver' in result['recorded']['webhook_error'] and TOKEN not in json.dumps(result)
    assert len(journal.entries()) == 1


@pytest.mark.parametrize('args, option', [
    (drain_args(action='Drain'), 'action'), (drain_args(action='drain now'), 'action'), (drain_args(outcome=''), 'outcome'),
    (drain_args(instance='www\nOUTCOME=ok'), 'instance'), (drain_args(instance='x' * 256), 'instance'),
    (drain_args(reason='r' * 1025), 'reason'), (drain_args(fields={'_PID': 1}), 'fields'),
    (drain_args(fields={'outcome': 'forged'}), 'fields'), (drain_args(fields={'a-b': 1}), 'fields'),
    (drain_args(notify_url='file:///etc/shadow?' + TOKEN), 'notify_url'),
    (drain_args(notify_url='http://admin:' + TOKEN + '@hooks/'), 'notify_url'),
])
def test_action_record_refuses_bad_options_before_recording(run_main, journal, args, option):
    result = run_main(action_record.main, args)
    assert result.get('failed') is True and option in result['msg'] and 'nothing was recorded' in result['msg'], result
    assert TOKEN not in json.dumps(result)
    assert journal.entries() == []


MARK = 'zQ9secretmark'


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(['http://h/', 'https://h:1/y?z=', 'http://h:65536/', 'gopher://h/', 'http://u:p@h/', '', 'http://']),
       st.text(max_size=60), st.text(max_size=40))
def test_any_url_and_instance_are_refused_by_name_or_accepted(run_main, prefix, rest, instance):
    """Check mode: nothing is sent either way; a refusal names the option and never shows the URL."""
    url = prefix + rest + MARK
    result = run_main(action_record.main, drain_args(notify_url=url, instance=instance), check=True)
    if result.get('failed'):
        assert 'exception' not in result
        assert 'notify_url' in result['msg'] or 'instance' in result['msg'], result['msg']
        assert MARK not in json.dumps(result)
    else:
        assert record.url_problem(url) is None and result['recorded']['webhook'] == 'off'
        assert MARK not in json.dumps(result)


# ---------------------------------------------------------------- graceful_stop


@pytest.fixture
def sleeper(tmp_path, procs):
    directory = tmp_path / 'site1'
    directory.mkdir()
    exe = directory / 'anqicms'
    shutil.copy(SLEEP, exe)
    proc = procs([str(exe), '60'])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if (tmp_path / 'site1' / 'anqicms').samefile('/proc/%d/exe' % proc.pid):
                break
        except OSError:
            pass
        time.sleep(0.02)
    return str(exe), proc


def test_graceful_stop_records_the_stop(run_main, journal, hook, sleeper, tmp_path):
    exe, proc = sleeper
    result = run_main(graceful_stop.main, {'exe': exe, 'timeout': 5, 'diagnostics_dir': str(tmp_path / 'diag'),
                                           'record_reason': 'node2 critical: 6 % available', 'notify_url': hook.url('/' + TOKEN)})
    assert result['outcome'] == 'stopped_gracefully' and proc.wait(timeout=5) == -15, result
    recorded = result['recorded']
    assert recorded['journal'] is True and recorded['webhook'] == 'delivered' and TOKEN not in json.dumps(result)
    [entry] = journal.entries()
    assert entry['ACTION'] == 'stop' and entry['OUTCOME'] == 'stopped_gracefully'
    assert entry['INSTANCE'] == str(tmp_path / 'site1') and entry['REASON'] == 'node2 critical: 6 % available'
    assert entry['PID'] == str(proc.pid) and entry['SIGNAL'] == 'SIGTERM' and entry['EXE'] == exe
    assert int(entry['RSS_FREED']) == result['rss_freed_bytes'] > 0
    assert entry['DIAGNOSTICS'] == result['diagnostics_path'] and float(entry['DURATION']) >= 0
    body = hook.requests[0][2]
    assert body['record']['rss_freed'] == result['rss_freed_bytes'] and body['alerts'][0]['labels']['outcome'] == 'stopped_gracefully'
    # Nothing more to stop: nothing more to record.
    again = run_main(graceful_stop.main, {'exe': exe, 'notify_url': hook.url('/' + TOKEN)})
    assert again['outcome'] == 'already_stopped' and again['recorded']['journal'] is False
    assert journal.entries() == [] and len(hook.requests) == 1


def test_graceful_stop_is_not_slowed_by_a_receiver_that_is_down(run_main, journal, sleeper):
    exe, proc = sleeper
    started = time.monotonic()
    result = run_main(graceful_stop.main, {'exe': exe, 'timeout': 5, 'record_instance': 'www',
                                           'notify_url': 'http://127.0.0.1:%d/%s' % (closed_port(), TOKEN)})
    assert time.monotonic() - started < record.DEADLINE + 3
    assert result['outcome'] == 'stopped_gracefully' and proc.wait(timeout=5) == -15 and not result.get('failed')
    assert result['recorded']['webhook'] == 'failed' and journal.entries()[0]['INSTANCE'] == 'www'


def test_graceful_stop_records_nothing_in_check_mode_or_with_record_false(run_main, journal, sleeper):
    exe, proc = sleeper
    plan = run_main(graceful_stop.main, {'exe': exe}, check=True)
    assert plan['outcome'] == 'would_stop' and plan['recorded']['journal'] is False
    done = run_main(graceful_stop.main, {'exe': exe, 'timeout': 5, 'record': False})
    assert done['outcome'] == 'stopped_gracefully' and proc.wait(timeout=5) == -15
    assert done['recorded']['journal'] is False and 'record=false' in done['recorded']['journal_error']
    assert journal.entries() == []


def test_graceful_stop_records_a_failed_stop(run_main, journal, procs):
    proc = procs([sys.executable, '-c', 'import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint(1, flush=True)\n'
                  'time.sleep(60)'], stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()
    result = run_main(graceful_stop.main, {'pid': proc.pid, 'timeout': 0.3, 'escalate': False})
    assert result['failed'] and proc.poll() is None
    [entry] = journal.entries()
    assert entry['OUTCOME'] == 'failed' and entry['PRIORITY'] == '3' and 'still running after SIGTERM' in entry['ERROR']
    assert result['recorded']['journal'] is True


def test_graceful_stop_refuses_a_bad_url_before_anything(run_main, journal, sleeper):
    exe, proc = sleeper
    result = run_main(graceful_stop.main, {'exe': exe, 'notify_url': 'http://user:%s@hooks/' % TOKEN})
    assert result['failed'] and 'notify_url' in result['msg'] and 'nothing signalled' in result['msg']
    assert TOKEN not in json.dumps(result) and proc.poll() is None and journal.entries() == []


# ---------------------------------------------------------------- backup and restore


def test_a_failed_backup_is_recorded(run_main, journal, tmp_path):
    result = run_main(backup.main, {'path': str(tmp_path / 'shop'), 'dest': str(tmp_path / 'd'), 'record_reason': 'nightly'})
    assert result['failed'] and 'config.json does not exist' in result['msg']
    [entry] = journal.entries()
    assert (entry['ACTION'], entry['INSTANCE'], entry['OUTCOME'], entry['REASON']) == ('backup', 'shop', 'failed', 'nightly')
    assert 'config.json does not exist' in entry['ERROR'] and entry['PATH'] == str(tmp_path / 'shop')


def test_a_failed_restore_is_recorded_and_check_mode_records_nothing(run_main, journal, tmp_path):
    args = {'path': str(tmp_path / 'shop'), 'dest': str(tmp_path / 'dest')}
    assert run_main(restore.main, args, check=True)['failed']
    assert journal.entries() == []
    result = run_main(restore.main, dict(args, backup_id='20260101T030000Z'))
    assert result['failed'] and result['recorded']['journal'] is True
    [entry] = journal.entries()
    assert (entry['ACTION'], entry['INSTANCE'], entry['OUTCOME']) == ('restore', 'shop', 'failed')
    assert entry['BACKUP_ID'] == '20260101T030000Z' and entry['ERROR']


@pytest.mark.parametrize('module', [backup, restore])
def test_backup_and_restore_refuse_a_bad_url_naming_it(run_main, journal, tmp_path, module):
    result = run_main(module.main, {'path': str(tmp_path / 'shop'), 'dest': str(tmp_path / 'd'), 'notify_url': 'ftp://x/' + TOKEN})
    assert result['failed'] and 'notify_url' in result['msg'] and TOKEN not in json.dumps(result)
    assert journal.entries() == [] and not (tmp_path / 'd').exists()
