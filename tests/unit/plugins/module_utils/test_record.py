# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action records: the journald native protocol read back from a real datagram socket, and the webhook against a real
HTTP server that answers as each test scripts (errors, silence, redirects)."""
from __future__ import annotations

import json
import os
import ssl
import struct
import time

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.opsguard.anqicms.plugins.module_utils import record
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.record_helpers import FakeJournal, Receiver, closed_port

TOKEN = 's3cr3t-T0KEN'


@pytest.fixture
def journal():
    fake = FakeJournal()
    yield fake
    fake.close()


@pytest.fixture
def receiver():
    made = []

    def make(answers=(200,)):
        made.append(Receiver(answers))
        return made[-1]

    yield make
    for one in made:
        one.close()


def stop_record(**fields):
    return record.build('stop', 'www', 'stopped_gracefully', 'host critical: 6 % available',
                        dict({'rss_freed': 536870912, 'diagnostics': '/var/lib/opsguard/diagnostics/x.json', 'pid': 4242}, **fields),
                        host='node2', now=1767261600.25)


# ---------------------------------------------------------------- journald


def test_the_entry_reaches_journald_with_every_field(journal):
    result = record.emit(stop_record(signal='SIGTERM'), journal_socket=journal.path)
    assert result['journal'] is True and result['journal_error'] is None and result['webhook'] == 'off'
    [entry] = journal.entries()
    assert entry['SYSLOG_IDENTIFIER'] == 'opsguard' and entry['MESSAGE_ID'] == record.MESSAGE_ID
    assert entry['ACTION'] == 'stop' and entry['INSTANCE'] == 'www' and entry['OUTCOME'] == 'stopped_gracefully'
    assert entry['REASON'] == 'host critical: 6 % available' and entry['HOST'] == 'node2'
    assert entry['RSS_FREED'] == '536870912' and entry['PID'] == '4242' and entry['SIGNAL'] == 'SIGTERM'
    assert entry['DIAGNOSTICS'] == '/var/lib/opsguard/diagnostics/x.json'
    assert entry['PRIORITY'] == '5'
    assert entry['MESSAGE'] == 'stop of www on node2: stopped_gracefully (host critical: 6 % available), 512.0 MiB freed'
    assert result['fields']['RSS_FREED'] == 536870912 and result['fields']['TIME'] == '2026-01-01T10:00:00.250Z'


def test_values_with_line_breaks_use_the_binary_form(journal):
    hostile = 'line one\nOUTCOME=forged\n\x00\x01 and more'
    record.emit(stop_record(error=hostile), journal_socket=journal.path)
    [data] = journal.datagrams()
    expected = hostile.encode()
    assert b'ERROR\n' + struct.pack('<Q', len(expected)) + expected + b'\n' in data
    fields = dict(record.parse(data))
    assert fields['ERROR'] == expected and fields['OUTCOME'] == b'stopped_gracefully'
    assert [name for name, dummy in record.parse(data)].count('OUTCOME') == 1


def test_oversize_values_are_cut_on_a_character_boundary(journal):
    record.emit(stop_record(error='é' * 5000), journal_socket=journal.path)
    [entry] = journal.entries()
    value = entry['ERROR']
    assert isinstance(value, str) and len(value.encode()) <= record.MAX_VALUE_BYTES
    assert value.endswith('bytes cut]') and value.startswith('éé')


def test_priority_follows_the_outcome():
    assert [record.priority(o) for o in ('failed', 'stopped_forced', 'stopped_gracefully', 'drained')] == [3, 4, 5, 5]


def test_without_journald_the_result_says_so_and_nothing_raises(tmp_path):
    result = record.emit(stop_record(), journal_socket=str(tmp_path / 'no-such-socket'))
    assert result['journal'] is False and 'no journald on this host' in result['journal_error']


def test_a_socket_nobody_reads_is_reported(journal):
    journal.sock.close()  # the file stays, nobody is bound to it any more (journald stopped)
    result = record.emit(stop_record(), journal_socket=journal.path)
    assert result['journal'] is False and 'journald did not take the record' in result['journal_error']


@pytest.mark.parametrize('name', ['_SYSTEMD_UNIT', '1ABC', 'a-b', 'a b', 'x' * 65, 'É', 'message', 'Action', 'priority',
                                  'SYSLOG_IDENTIFIER', '', 7, None])
def test_hostile_field_names_are_refused(name):
    problems = record.field_problems({name: 'x'})
    assert len(problems) == 1 and 'fields name' in problems[0], problems
    with pytest.raises(ValueError):
        record.build('drain', 'www', 'drained', fields={name: 'x'})


def test_too_many_fields_are_refused():
    assert 'at most 24' in record.field_problems(dict(('f%d' % i, i) for i in range(25)))[0]


@settings(max_examples=150, deadline=None, database=None)
@given(st.dictionaries(st.text(min_size=1, max_size=70), st.one_of(st.text(max_size=3000), st.integers(), st.booleans(),
                                                                   st.lists(st.integers(), max_size=5)), max_size=6),
       st.text(max_size=200))
def test_any_fields_are_refused_or_round_trip(fields, reason):
    """Field names are refused or recorded under their upper-case name; values always come back from the protocol as
    written (cut at 2048 bytes), never splitting into other fields."""
    problems = record.field_problems(fields)
    if problems:
        assert all('fields' in p for p in problems)
        return
    entry = record.build('drain', 'www', 'drained', reason, fields, host='h', now=0)
    parsed = record.parse(record.encode(record.journal_fields(entry)))
    names = [n for n, dummy in parsed]
    assert len(names) == len(set(names)) == 4 + len(entry) - 1
    got = dict(parsed)
    assert got['REASON'] == record._truncated(reason.encode('utf-8', 'replace'))
    for name, value in fields.items():
        assert got[name.upper()] == record._truncated(record.text_value(value).encode('utf-8', 'replace'))


# ---------------------------------------------------------------- webhook


def test_the_webhook_gets_alertmanager_json(receiver):
    hook = receiver([200])
    result = record.emit(stop_record(), notify_url=hook.url('/hook?token=' + TOKEN), journal_socket='/nonexistent')
    assert result['webhook'] == 'delivered' and result['webhook_attempts'] == 1 and result['webhook_error'] is None
    assert result['webhook_target'] == 'http://127.0.0.1:%d' % hook.port
    assert TOKEN not in json.dumps(result)
    [(dummy, path, body, headers)] = hook.requests
    assert path == '/hook?token=' + TOKEN and headers['Content-Type'] == 'application/json'
    assert body['version'] == '4' and body['status'] == 'firing' and len(body['alerts']) == 1
    alert = body['alerts'][0]
    assert alert['labels'] == {'alertname': 'OpsguardAction', 'action': 'stop', 'instance': 'www', 'host': 'node2',
                               'outcome': 'stopped_gracefully', 'severity': 'info'}
    assert alert['annotations']['rss_freed'] == '536870912' and alert['annotations']['reason'] == 'host critical: 6 % available'
    assert alert['annotations']['summary'].startswith('stop of www on node2')
    assert alert['startsAt'] == '2026-01-01T10:00:00.250Z'
    assert body['record']['rss_freed'] == 536870912 and body['record']['diagnostics'].endswith('x.json')
    assert body['commonLabels'] == alert['labels']


def test_a_500_is_retried_until_it_is_delivered(receiver):
    hook = receiver([500, 503, 200])
    result = record.emit(stop_record(), notify_url=hook.url(), journal_socket='/nonexistent')
    assert result['webhook'] == 'delivered' and result['webhook_attempts'] == 3 and len(hook.requests) == 3
    pauses = [b[0] - a[0] for a, b in zip(hook.requests, hook.requests[1:])]
    assert pauses[1] > pauses[0] * 1.3, 'the pause between tries should grow: %s' % pauses


def test_a_receiver_that_keeps_failing_is_given_up_within_the_deadline(receiver):
    hook = receiver([500])
    started = time.monotonic()
    result = record.emit(stop_record(), notify_url=hook.url('/h/' + TOKEN), journal_socket='/nonexistent')
    assert time.monotonic() - started < record.DEADLINE + 1
    assert result['webhook'] == 'failed' and result['webhook_attempts'] == record.ATTEMPTS == len(hook.requests)
    assert result['webhook_error'] == 'the receiver answered HTTP 500' and TOKEN not in json.dumps(result)


def test_a_receiver_that_does_not_answer_costs_at_most_the_deadline(receiver):
    hook = receiver([('sleep', 30)])
    started = time.monotonic()
    result = record.post(hook.url('/' + TOKEN), {'x': 1}, deadline=2.0, attempt_timeout=0.6)
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, elapsed
    assert result['webhook'] == 'failed' and 'timed out' in result['webhook_error'] and TOKEN not in result['webhook_error']
    assert 2 <= len(hook.requests) <= 3


def test_the_deadline_holds_even_when_one_try_would_block_longer(receiver):
    """The hard stop is the thread: even an attempt timeout far beyond the deadline cannot hold the caller."""
    hook = receiver([('sleep', 30)])
    started = time.monotonic()
    result = record.post(hook.url(), {'x': 1}, deadline=1.0, attempt_timeout=60)
    assert time.monotonic() - started < 2.0
    assert result['webhook'] == 'failed' and 'timed out' in result['webhook_error']


def test_a_client_error_is_not_retried(receiver):
    hook = receiver([404])
    result = record.emit(stop_record(), notify_url=hook.url(), journal_socket='/nonexistent')
    assert result['webhook'] == 'failed' and result['webhook_attempts'] == 1 and result['webhook_error'] == 'the receiver answered HTTP 404'


def test_a_redirect_is_not_followed(receiver):
    target = receiver([200])
    hook = receiver([('redirect', target.url('/stolen'))])
    result = record.emit(stop_record(), notify_url=hook.url('/?t=' + TOKEN), journal_socket='/nonexistent')
    assert result['webhook'] == 'failed' and 'redirect' in result['webhook_error'] and target.requests == []


def test_a_closed_port_fails_fast_without_the_url_in_the_message():
    port = closed_port()
    started = time.monotonic()
    result = record.post('http://127.0.0.1:%d/%s' % (port, TOKEN), {'x': 1})
    assert time.monotonic() - started < record.DEADLINE
    assert result['webhook'] == 'failed' and 'cannot reach the receiver' in result['webhook_error']
    assert TOKEN not in json.dumps(result) and str(port) not in result['webhook_error']


def test_https_to_a_plain_http_receiver_fails_cleanly(receiver):
    hook = receiver([200])
    result = record.post('https://127.0.0.1:%d/%s' % (hook.port, TOKEN), {'x': 1}, deadline=3)
    assert result['webhook'] == 'failed' and result['webhook_error'].startswith('cannot reach the receiver')
    assert TOKEN not in result['webhook_error']


def test_https_verifies_certificates_and_host_names():
    opener = record._opener('https://example.invalid/')
    [handler] = [h for h in opener.handlers if type(h).__name__ == 'HTTPSHandler']
    context = handler._context  # pylint: disable=protected-access
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True


@pytest.mark.parametrize('url', ['file:///etc/passwd?' + TOKEN, 'ftp://h/' + TOKEN, 'http://user:' + TOKEN + '@h/',
                                 'http://h/a b' + TOKEN, 'http://h/' + TOKEN + '\n', 'http://h/é' + TOKEN,
                                 'http://h:99999/' + TOKEN, 'http:///' + TOKEN, TOKEN, 'http://h/' + TOKEN * 300, '', None, 7,
                                 'http://h:0/' + TOKEN, 'javascript:' + TOKEN])
def test_unusable_urls_are_refused_without_showing_them(url):
    problem = record.url_problem(url)
    assert problem and problem.startswith('notify_url') and TOKEN not in problem, problem
    result = record.emit(stop_record(), notify_url=url, journal_socket='/nonexistent')
    # emit() takes an empty value for "no webhook"; the modules refuse it before that (see option_problems).
    assert result['webhook'] == ('failed' if url else 'off') and result['webhook_attempts'] == 0


@pytest.mark.parametrize('url', ['http://h/', 'https://hooks.example.com:8443/a/b?token=x', 'http://[::1]:9093/api/v2/alerts',
                                 'HTTPS://H.EXAMPLE/'])
def test_usable_urls_pass(url):
    assert record.url_problem(url) is None


def test_module_options_are_checked_together():
    problems = record.option_problems({'notify_url': 'ftp://x/' + TOKEN, 'record_instance': 'a\nb', 'record_reason': 'r' * 1025})
    assert [p.split()[0] for p in problems] == ['notify_url', 'record_instance', 'record_reason']
    assert TOKEN not in ' '.join(problems)
    assert record.option_problems({'notify_url': None, 'record_instance': None, 'record_reason': ''}) == []


def test_for_module_records_nothing_in_check_mode_or_when_off(journal, monkeypatch):
    monkeypatch.setattr(record, 'JOURNAL_SOCKET', journal.path)
    assert record.for_module({'record': True}, 'stop', 'www', 'stopped_gracefully', check_mode=True)['journal'] is False
    assert record.for_module({'record': False}, 'stop', 'www', 'stopped_gracefully')['journal'] is False
    assert journal.entries() == []
    assert record.for_module({'record': True, 'record_reason': 'why'}, 'stop', 'www', 'failed', {'error': 'x'})['journal'] is True
    [entry] = journal.entries()
    assert entry['REASON'] == 'why' and entry['PRIORITY'] == '3' and entry['ERROR'] == 'x'


def test_importing_records_stays_light():
    """Modules that import it run on hosts short of memory: no urllib.request, ssl or http.client until a webhook is used."""
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    code = ('import sys; from ansible_collections.opsguard.anqicms.plugins.module_utils import record; '
            'print(sorted(m for m in ("urllib.request", "ssl", "http.client", "email") if m in sys.modules))')
    # A fresh interpreter finds the collection where this one imported it from (the directory that holds
    # ansible_collections: .collections here, the ansible-test mirror under ansible-test).
    package = os.path.abspath(record.__file__)
    while os.path.basename(package) != 'ansible_collections':
        package = os.path.dirname(package)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(package))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == '[]', out.stdout
