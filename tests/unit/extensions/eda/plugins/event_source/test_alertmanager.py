"""The Alertmanager event source: argument checks, every refusal, the events, and hostile input (hypothesis)."""
from __future__ import annotations

import asyncio
import http.client
import json
import typing as t

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.opsguard.anqicms.extensions.eda.plugins.event_source import alertmanager as am
from ansible_collections.opsguard.anqicms.tests.utils.ports import free_port, port_answers
from ansible_collections.opsguard.anqicms.tests.utils.wait import wait_for

TOKEN = 'c0rrect-horse_battery.staple'


def alert(status: str = 'firing', **labels: str) -> dict[str, t.Any]:
    base = {'alertname': 'OpsguardServiceLeakCritical', 'severity': 'critical', 'service': 'anqicms:/srv/anqicms/site1',
            'unit': 'anqicms-site1.service', 'install_dir': '/srv/anqicms/site1', 'instance': 'node2:9100',
            'job': 'node'}
    base.update(labels)
    return {'status': status, 'labels': {k: v for k, v in base.items() if v is not None},
            'annotations': {'summary': 'node2:9100: anqicms:/srv/anqicms/site1 reaches its memory limit in 1m 30s'},
            'startsAt': '2026-11-29T10:00:00.000Z', 'endsAt': '0001-01-01T00:00:00Z',
            'generatorURL': 'http://prometheus:9090/graph?g0.expr=x', 'fingerprint': 'c6a1d1f4e1b2a3d4'}


def payload(*alerts: dict[str, t.Any], **extra: t.Any) -> dict[str, t.Any]:
    alerts = alerts or (alert(),)
    document = {'version': '4', 'groupKey': '{}:{alertname="OpsguardServiceLeakCritical"}', 'truncatedAlerts': 0,
                'status': alerts[0]['status'], 'receiver': 'eda', 'groupLabels': {'alertname': 'x'},
                'commonLabels': {'severity': 'critical'}, 'commonAnnotations': {},
                'externalURL': 'http://alertmanager:9093', 'alerts': list(alerts)}
    document.update(extra)
    return document


def conf(**args: t.Any) -> dict[str, t.Any]:
    return am.parse_args(args, environ={})


def request(body: bytes | dict, token: str | None = TOKEN, path: str = '/alerts', method: str = 'POST',
            headers: dict[str, str] | None = None) -> bytes:
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    fields = {'Host': 'eda:5001', 'User-Agent': 'Alertmanager/0.25.0', 'Content-Type': 'application/json',
              'Content-Length': str(len(body))}
    if token is not None:
        fields['Authorization'] = f'Bearer {token}'
    fields.update(headers or {})
    head = f'{method} {path} HTTP/1.1\r\n' + ''.join(f'{k}: {v}\r\n' for k, v in fields.items() if v is not None)
    return head.encode('latin-1') + b'\r\n' + body


class FakeWriter:
    def __init__(self) -> None:
        self.data = b''
        self.closed = False

    def get_extra_info(self, name: str) -> t.Any:
        return ('192.0.2.7', 40000) if name == 'peername' else None

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def serve(settings_: dict[str, t.Any], raw: bytes, eof: bool = True) -> tuple[int, dict, list, FakeWriter]:
    """One request through handle_connection: status, the JSON answer, the queued events, the writer."""
    async def run() -> tuple[int, list, FakeWriter]:
        reader = asyncio.StreamReader(limit=am.HEAD_LIMIT)
        reader.feed_data(raw)
        if eof:
            reader.feed_eof()
        queue: asyncio.Queue = asyncio.Queue()
        writer = FakeWriter()
        status = await am.handle_connection(settings_, queue, reader, writer)
        events = []
        while not queue.empty():
            events.append(queue.get_nowait())
        return status, events, writer

    status, events, writer = asyncio.run(run())
    assert writer.closed
    answer = {}
    if writer.data:
        head, _sep, body = writer.data.partition(b'\r\n\r\n')
        assert head.startswith(f'HTTP/1.1 {status} '.encode())
        assert b'Connection: close' in head
        answer = json.loads(body)
    return status, answer, events, writer


# --- arguments -------------------------------------------------------------------------------------------------

def test_defaults_listen_on_loopback_without_token():
    settings_ = conf()
    assert (settings_['host'], settings_['port'], settings_['path']) == ('127.0.0.1', 5001, '/alerts')
    assert settings_['token'] is None and settings_['enabled'] is True and settings_['pause_file'] is None


def test_token_comes_from_the_named_environment_variable():
    settings_ = am.parse_args({'token_env': 'MY_TOKEN', 'require_token': 'true', 'port': '6000'},
                              environ={'MY_TOKEN': f' {TOKEN}\n'})
    assert settings_['token'] == TOKEN.encode() and settings_['port'] == 6000 and settings_['require_token'] is True


def test_a_literal_token_wins_over_the_environment():
    assert am.parse_args({'token': 'abc'}, environ={'OPSGUARD_EDA_TOKEN': 'xyz'})['token'] == b'abc'


@pytest.mark.parametrize('args, message', [
    ({'require_token': True}, 'export OPSGUARD_EDA_TOKEN'),
    ({'port': 70000}, 'port must be from 0 to 65535'),
    ({'port': 'http'}, 'port must be a number'),
    ({'port': True}, 'port must be a number'),
    ({'path': 'alerts'}, 'path must start with /'),
    ({'path': '/alerts?x=1'}, 'path must start with /'),
    ({'max_body_bytes': 10}, 'max_body_bytes must be from 1024'),
    ({'max_body_bytes': 2 ** 40}, 'max_body_bytes must be from 1024'),
    ({'enabled': 'maybe'}, 'enabled must be true or false'),
    ({'pause_file': 'paused'}, 'pause_file must be an absolute path'),
    ({'token_env': 'A B'}, 'token_env must be an environment variable name'),
    ({'token': 'two words'}, 'printable ASCII without spaces'),
    ({'host': ''}, 'host must be an address'),
    ({'prot': 5001}, 'unknown argument(s) prot'),
])
def test_bad_arguments_are_refused_before_listening(args, message):
    with pytest.raises(ValueError, match=None) as info:
        am.parse_args(args, environ={})
    assert message in str(info.value)
    assert str(info.value).startswith('alertmanager source:')


# --- refusals ---------------------------------------------------------------------------------------------------

def test_a_valid_payload_queues_one_event_per_alert():
    second = alert(service='mariadb', unit='mariadb.service', install_dir=None,
                   alertname='OpsguardServiceNearLimitCritical')
    status, answer, events, _writer = serve(conf(token=TOKEN), request(payload(alert(), second)))
    assert (status, answer) == (200, {'accepted': 2})
    first = events[0]
    assert first['alert']['labels']['alertname'] == 'OpsguardServiceLeakCritical'
    assert first['alert']['fingerprint'] == 'c6a1d1f4e1b2a3d4'
    assert first['alert']['startsAt'] == '2026-11-29T10:00:00.000Z'
    assert first['alert']['annotations']['summary'].startswith('node2:9100')
    assert (first['receiver'], first['externalURL']) == ('eda', 'http://alertmanager:9093')
    assert first['opsguard'] == {'subject': 'anqicms', 'host': 'node2', 'install_dir': '/srv/anqicms/site1',
                                 'alertname': 'OpsguardServiceLeakCritical', 'severity': 'critical',
                                 'service': 'anqicms:/srv/anqicms/site1', 'unit': 'anqicms-site1.service'}
    assert events[1]['opsguard']['subject'] == 'service' and 'install_dir' not in events[1]['opsguard']
    assert 'meta' not in first  # meta.hosts would become --limit and skip the playbooks' localhost plays


def test_no_token_configured_accepts_without_authorization():
    status, _answer, events, _writer = serve(conf(), request(payload(), token=None))
    assert status == 200 and len(events) == 1


@pytest.mark.parametrize('token, headers', [
    (None, None),
    ('wrong', None),
    (TOKEN[:-1], None),
    (TOKEN + 'x', None),
    (None, {'Authorization': f'Basic {TOKEN}'}),
    (None, {'Authorization': TOKEN}),
    ('', None),
])
def test_a_missing_or_wrong_token_is_refused_with_401(token, headers):
    status, answer, events, writer = serve(conf(token=TOKEN), request(payload(), token=token, headers=headers))
    assert status == 401 and events == []
    assert answer == {'error': 'a valid bearer token is required'}
    assert b'WWW-Authenticate: Bearer' in writer.data


def test_the_token_is_compared_in_constant_time(monkeypatch):
    calls = []

    def spy(given, expected):
        calls.append((given, expected))
        return False

    monkeypatch.setattr(am.hmac, 'compare_digest', spy)
    assert serve(conf(token=TOKEN), request(payload(), token='guess'))[0] == 401
    assert calls == [(b'guess', TOKEN.encode())]


BODY = json.dumps(payload()).encode()


@pytest.mark.parametrize('raw, status, message', [
    (request(BODY, path='/other'), 404, 'nothing here'),
    (request(BODY, method='PUT'), 405, 'only POST'),
    (request(b'', method='GET', headers={'Content-Length': None, 'Content-Type': None}), 405, 'only POST'),
    (request(BODY, headers={'Content-Type': 'text/plain'}), 415, 'application/json'),
    (request(BODY, headers={'Content-Type': None}), 415, 'application/json'),
    (request(BODY, headers={'Content-Type': 'application/json; charset=latin-1'}), 415, 'UTF-8'),
    (request(BODY, headers={'Content-Length': None}), 411, 'Content-Length is required'),
    (request(BODY, headers={'Content-Length': '-5'}), 400, 'whole number'),
    (request(BODY, headers={'Content-Length': '1e3'}), 400, 'whole number'),
    (request(BODY, headers={'Content-Length': '99999999999999999999'}), 400, 'whole number'),
    (request(BODY, headers={'Content-Length': str(2 * 1024 * 1024)}), 413, 'over 1048576 bytes'),
    (request(BODY, headers={'Transfer-Encoding': 'chunked'}), 501, 'Transfer-Encoding'),
    (request(b'{"version": "4",', headers={'Content-Length': '16'}), 400, 'not valid JSON'),
    (request(b'\xff\xfe{}'), 400, 'not UTF-8'),
    (request(b'[1, 2]'), 422, 'JSON object'),
    (b'POST /alerts HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}', 400, 'given twice'),
    (b'POST /alerts\r\n\r\n', 400, 'malformed request line'),
    (b'POST http://x/alerts HTTP/1.1\r\n\r\n', 400, 'must be a path'),
    (b'POST /alerts HTTP/1.1\r\n folded: x\r\n\r\n', 400, 'malformed header'),
    (b'POST /alerts HTTP/1.1\r\nX: a\x01b\r\n\r\n', 400, 'control character'),
    (b'POST /alerts HTTP/1.1\r\nX: \xe9\r\n\r\n', 400, 'not ASCII'),
    (b'POST /alerts HTTP/1.1\r\n' + b'X: y\r\n' * 101 + b'\r\n', 431, 'more than 100 header fields'),
    (b'POST /alerts HTTP/1.1\r\nX: ' + b'y' * am.HEAD_LIMIT + b'\r\n\r\n', 431, 'request head is over'),
])
def test_each_bad_request_gets_its_4xx_and_queues_nothing(raw, status, message):
    answered, answer, events, _writer = serve(conf(token=TOKEN), raw)
    assert (answered, events) == (status, [])
    assert message in answer['error']


@pytest.mark.parametrize('document, message', [
    (payload(version='3'), 'version must be "4"'),
    (payload(status='pending'), 'status must be "firing" or "resolved"'),
    (payload(alerts=[]), 'alerts must be a non-empty list'),
    (payload(alerts={'a': 1}), 'alerts must be a non-empty list'),
    (payload(alerts=[alert()] * 1001), 'more than 1000 alerts'),
    (payload(alerts=['x']), 'alerts[0] must be an object'),
    (payload(alerts=[dict(alert(), status='firin')]), 'alerts[0].status'),
    (payload(alerts=[dict(alert(), labels={'severity': 'critical'})]), 'alerts[0].labels must have an alertname'),
    (payload(alerts=[dict(alert(), labels={'alertname': 'A', 'severity': 5})]),
     'alerts[0].labels.severity must be a string'),
    (payload(alerts=[dict(alert(), labels={'alertname': 'A', 'bad-name': 'x'})]), 'is not a label name'),
    (payload(alerts=[dict(alert(), labels=None)]), 'alerts[0].labels must be an object'),
    (payload(alerts=[dict(alert(), annotations={'summary': ['x']})]), 'annotations.summary must be a string'),
    (payload(alerts=[dict(alert(), startsAt=None)]), 'alerts[0].startsAt must be a string'),
    (payload(alerts=[alert(), dict(alert(), fingerprint=7)]), 'alerts[1].fingerprint must be a string'),
    (payload(receiver=None), 'receiver must be a string'),
    (payload(commonLabels=[]), 'commonLabels must be an object'),
    (payload(truncatedAlerts=-1), 'truncatedAlerts'),
    (payload(truncatedAlerts=True), 'truncatedAlerts'),
])
def test_json_that_is_not_an_alertmanager_payload_gets_422(document, message):
    status, answer, events, _writer = serve(conf(), request(document, token=None))
    assert (status, events) == (422, [])
    assert message in answer['error']


@pytest.mark.parametrize('body', [
    b'{"version": "4", "version": "4"}',
    b'{"version": NaN}',
    b'{"x": Infinity}',
    b'[' * 100000 + b']' * 100000,
    b'',
])
def test_json_tricks_get_400(body):
    with pytest.raises(am.Refusal) as info:
        am.parse_payload(body)
    assert info.value.status == 400


def test_a_client_that_goes_away_mid_body_is_dropped_quietly():
    raw = request(BODY)
    status, answer, events, writer = serve(conf(token=TOKEN), raw[:-10])
    assert (status, answer, events, writer.data) == (0, {}, [], b'')


def test_a_client_that_stalls_is_answered_400_after_the_read_timeout():
    raw = request(BODY)
    status, answer, events, _writer = serve(conf(token=TOKEN, read_timeout=0.2), raw[:-10], eof=False)
    assert (status, events) == (400, []) and 'timed out reading the body' in answer['error']
    status, answer, _events, _writer = serve(conf(read_timeout=0.2), b'POST /alerts HTTP/1.1\r\n', eof=False)
    assert status == 400 and 'request head' in answer['error']


# --- the kill switch --------------------------------------------------------------------------------------------

def test_the_pause_file_accepts_and_queues_nothing(tmp_path, caplog):
    pause = tmp_path / 'eda-paused'
    settings_ = conf(pause_file=str(pause))
    assert serve(settings_, request(payload(), token=None))[2] != []
    pause.touch()
    status, answer, events, _writer = serve(settings_, request(payload(), token=None))
    assert (status, answer, events) == (200, {'accepted': 0, 'paused': True}, [])
    assert f'{pause} exists' in caplog.text and 'OpsguardServiceLeakCritical' in caplog.text
    pause.unlink()
    assert len(serve(settings_, request(payload(), token=None))[2]) == 1


def test_enabled_false_queues_nothing_but_still_checks():
    settings_ = conf(enabled='false', token=TOKEN)
    assert serve(settings_, request(payload()))[:3] == (200, {'accepted': 0, 'paused': True}, [])
    assert serve(settings_, request(payload(), token='bad'))[0] == 401
    assert serve(settings_, request(payload(version='1')))[0] == 422


# --- what the labels say ----------------------------------------------------------------------------------------

@pytest.mark.parametrize('labels, host', [
    ({'instance': 'node2:9100'}, 'node2'),
    ({'instance': 'node2.example.org:9100', 'host': 'web-2'}, 'web-2'),
    ({'instance': '10.0.0.12:9100'}, '10.0.0.12'),
    ({'instance': '[2001:db8::12]:9100'}, '2001:db8::12'),
    ({'instance': 'node2'}, 'node2'),
    ({'host': '2001:db8::12'}, '2001:db8::12'),
    ({'instance': ''}, None),
    ({}, None),
    ({'host': 'all'}, None),
    ({'instance': 'all:9100'}, None),
    ({'host': 'web*'}, None),
    ({'host': 'node1,node2'}, None),
    ({'host': 'app:!node1'}, None),
    ({'host': '-i'}, None),
    ({'host': 'a b'}, None),
    ({'host': '..'}, None),
    ({'instance': '[::1'}, None),
])
def test_the_host_comes_from_the_host_label_or_the_instance_without_port(labels, host):
    assert am.host_from_labels(labels) == host


@pytest.mark.parametrize('labels, install_dir', [
    ({'install_dir': '/srv/anqicms/site1'}, '/srv/anqicms/site1'),
    ({'service': 'anqicms:/opt/anqicms/www'}, '/opt/anqicms/www'),
    ({'service': 'mariadb'}, None),
    ({'service': 'anqicms:relative'}, None),
    ({'service': 'anqicms:/srv/../etc'}, None),
    ({'service': 'anqicms:/srv/a\nb'}, None),
    ({'service': 'anqicms:/'}, None),
    ({'install_dir': '/srv/a b'}, None),
    ({'install_dir': '/srv/site:1'}, None),
])
def test_the_install_dir_must_be_a_plain_absolute_path(labels, install_dir):
    assert am.install_dir_from_labels(labels) == install_dir


def test_host_alerts_have_subject_host():
    host_alert = alert(alertname='OpsguardHostMemoryCritical', service=None, unit=None, install_dir=None)
    (event,) = am.events_from_payload(am.parse_payload(json.dumps(payload(host_alert)).encode()))
    assert event['opsguard']['subject'] == 'host' and event['opsguard']['host'] == 'node2'
    assert event['opsguard']['service'] == ''


# --- hostile input (hypothesis) ---------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=25)
STATUSES = {200, 400, 401, 404, 405, 411, 413, 415, 422, 431, 501}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_as_body_are_checked_or_refused(body):
    try:
        events = am.events_from_payload(am.parse_payload(body))
    except am.Refusal as refusal:
        assert refusal.status in (400, 422) and refusal.message
    else:
        assert events and all(isinstance(e['opsguard']['subject'], str) for e in events)


@settings(max_examples=300, deadline=None)
@given(JSON, st.sampled_from(['version', 'status', 'receiver', 'alerts', 'commonLabels', 'externalURL']))
def test_any_json_in_any_field_is_checked_or_refused(value, field):
    document = payload()
    document[field] = value
    try:
        am.events_from_payload(am.parse_payload(json.dumps(document).encode()))
    except am.Refusal as refusal:
        assert refusal.status in (400, 422)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=30), st.text(max_size=60), max_size=8))
def test_any_labels_give_a_safe_host_and_install_dir_or_none(labels):
    host = am.host_from_labels(labels)
    install_dir = am.install_dir_from_labels(labels)
    if host is not None:
        assert not any(c in host for c in ' ,*!&[]\n\t') and host not in ('all', 'ungrouped')
    if install_dir is not None:
        assert install_dir.startswith('/') and '..' not in install_dir.split('/') and ':' not in install_dir


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.booleans())
def test_any_bytes_on_the_connection_get_an_answer_or_a_close_never_a_crash(raw, with_head_end):
    status, _answer, events, _writer = serve(conf(token=TOKEN), raw + (b'\r\n\r\n' if with_head_end else b''))
    assert status in STATUSES | {0}
    assert events == []  # nothing random carries the token


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Za-z-]{1,20}", fullmatch=True),
                       st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40), max_size=10))
def test_any_extra_headers_never_bypass_the_token(extra):
    extra = {k: v for k, v in extra.items() if k.lower() not in ('content-length', 'content-type', 'host')}
    raw = request(BODY, token=None, headers=extra)
    status, _answer, events, _writer = serve(conf(token=TOKEN), raw)
    if 'Bearer ' + TOKEN not in extra.values():
        assert status != 200 and events == []


# --- a real socket ----------------------------------------------------------------------------------------------

def test_main_serves_real_http_clients(tmp_path):
    port = free_port()

    async def scenario() -> tuple[list, list]:
        queue: asyncio.Queue = asyncio.Queue()
        server = asyncio.ensure_future(am.main(queue, {'port': port, 'token': TOKEN, 'path': '/hook'}))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: wait_for(lambda: port_answers(port), 20, f'the source on {port}'))

        def post(token: str) -> tuple[int, dict]:
            conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
            conn.request('POST', '/hook', body=BODY,
                         headers={'Content-Type': 'application/json', 'Authorization': f'Bearer {token}'})
            response = conn.getresponse()
            result = response.status, json.loads(response.read())
            conn.close()
            return result

        answers = [await loop.run_in_executor(None, post, token) for token in (TOKEN, 'nope')]
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server
        events = []
        while not queue.empty():
            events.append(queue.get_nowait())
        return answers, events

    answers, events = asyncio.run(scenario())
    assert answers == [(200, {'accepted': 1}), (401, {'error': 'a valid bearer token is required'})]
    assert [e['opsguard']['install_dir'] for e in events] == ['/srv/anqicms/site1']
    assert not port_answers(port)


def test_connections_beyond_the_limit_get_503_at_once(monkeypatch):
    monkeypatch.setattr(am, 'MAX_CONNECTIONS', 1)
    port = free_port()

    async def scenario() -> tuple[int, int]:
        queue: asyncio.Queue = asyncio.Queue()
        server = asyncio.ensure_future(am.main(queue, {'port': port, 'read_timeout': 30}))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: wait_for(lambda: port_answers(port), 20, f'the source on {port}'))
        await asyncio.sleep(0.1)  # the probe connection of port_answers is closed and served
        _reader, idle = await asyncio.open_connection('127.0.0.1', port)  # holds the only slot, sends nothing

        def post() -> int:
            conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
            try:
                conn.request('POST', '/alerts', body=BODY, headers={'Content-Type': 'application/json'})
                return conn.getresponse().status
            except (OSError, http.client.HTTPException):
                return 0  # a 503 may close the connection before the body is sent
            finally:
                conn.close()

        busy = await loop.run_in_executor(None, lambda: wait_for(lambda: post() == 503 and 503, 10, 'a 503'))
        idle.close()
        free = await loop.run_in_executor(None, lambda: wait_for(lambda: post() == 200 and 200, 20, 'a 200'))
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server
        return busy, free

    assert asyncio.run(scenario()) == (503, 200)
