"""ansible-rulebook event source: Prometheus Alertmanager webhooks, one event per alert.

Listens on ``host``:``port`` for Alertmanager's webhook POSTs (payload version 4) on ``path``, checks them and
puts one event per alert on the rulebook's queue. Standard library only (asyncio): nothing to install besides
ansible-rulebook, and every limit of the HTTP side is this file's own.

Arguments (all optional):

    host            address to listen on (default 127.0.0.1; 0.0.0.0 for Alertmanager on another host)
    port            TCP port (default 5001; 0 picks a free one, logged)
    path            URL path Alertmanager posts to (default /alerts)
    token           shared bearer token (prefer token_env: a rulebook is not the place for a secret)
    token_env       name of an environment variable that holds the token (default OPSGUARD_EDA_TOKEN)
    require_token   refuse to start without a token (default false)
    max_body_bytes  largest request body accepted (default 1 MiB, at most 64 MiB)
    max_alerts      most alerts in one payload (default 1000)
    read_timeout    seconds a client gets to send its request head and body (default 10)
    enabled         false: accept and check webhooks, act on nothing (default true)
    pause_file      while this file exists, accept and check webhooks, act on nothing

Answers: 200 with ``{"accepted": N}`` (``"paused": true`` when nothing was queued because of the kill switch);
400 bad request line, headers or JSON; 401 missing or wrong token; 404 other path; 405 other method;
411 no Content-Length; 413 body too large; 415 not application/json (UTF-8); 422 JSON that is not an
Alertmanager version 4 payload; 431 request head too large; 501 Transfer-Encoding; 503 more than 64 connections
at once. Every answer closes the connection. A refused request queues nothing.

Each event::

    {"alert": {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"},
     "receiver", "externalURL", "groupKey", "groupLabels", "commonLabels", "commonAnnotations",
     "opsguard": {"subject": "anqicms" | "service" | "host",
                  "host": inventory host (label ``host``, else ``instance`` without its port),
                  "install_dir": the AnQiCMS instance (label ``install_dir``, else ``service`` ``anqicms:DIR``),
                  "service", "unit", "severity", "alertname"}}

``opsguard.host`` and ``opsguard.install_dir`` are only present when the labels give a safe value (a host name
or address; an absolute, normalised path): they go into playbook variables. No ``meta.hosts`` is set on
purpose: ansible-rulebook would turn it into ``--limit`` and leave out the playbooks' localhost plays.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import re
import typing as t

LOGGER = logging.getLogger(__name__)

DEFAULTS: dict[str, t.Any] = {
    'host': '127.0.0.1',
    'port': 5001,
    'path': '/alerts',
    'token': None,
    'token_env': 'OPSGUARD_EDA_TOKEN',
    'require_token': False,
    'max_body_bytes': 1024 * 1024,
    'max_alerts': 1000,
    'read_timeout': 10.0,
    'enabled': True,
    'pause_file': None,
}
MAX_BODY_LIMIT = 64 * 1024 * 1024
HEAD_LIMIT = 16 * 1024
MAX_HEADERS = 100
# Connections served at once; more are answered 503 at once (a flood of slow clients cannot pile up).
MAX_CONNECTIONS = 64
LABEL_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*\Z')
TOKEN_CHARS = re.compile(r'[\x21-\x7e]+\Z')
HOST_NAME = re.compile(r'[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252})\Z')
# Inventory patterns that name more than one host: never a target taken from a label.
RESERVED_HOSTS = frozenset(('all', 'ungrouped'))
INSTALL_DIR = re.compile(r'/[A-Za-z0-9._@+/-]{0,4095}\Z')
ANQICMS_SERVICE = re.compile(r'anqicms:(.+)\Z', re.S)
REASONS = {
    200: 'OK', 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 405: 'Method Not Allowed',
    411: 'Length Required', 413: 'Content Too Large', 415: 'Unsupported Media Type', 422: 'Unprocessable Content',
    431: 'Request Header Fields Too Large', 500: 'Internal Server Error', 501: 'Not Implemented',
    503: 'Service Unavailable',
}


class Refusal(Exception):
    """A request answered with a 4xx/5xx status and a message; nothing is queued."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# --- arguments -------------------------------------------------------------------------------------------------

def _as_bool(name: str, value: t.Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ('true', 'yes', 'on', '1', 'false', 'no', 'off', '0'):
        return value.strip().lower() in ('true', 'yes', 'on', '1')
    raise ValueError(f'alertmanager source: {name} must be true or false, got {value!r}')


def _as_number(name: str, value: t.Any, kind: type, low: float, high: float) -> t.Any:
    if isinstance(value, bool):
        raise ValueError(f'alertmanager source: {name} must be a number from {low} to {high}, got {value!r}')
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f'alertmanager source: {name} must be a number from {low} to {high}, got {value!r}') from None
    if kind is int and isinstance(value, float) and value != number:
        raise ValueError(f'alertmanager source: {name} must be a whole number, got {value!r}')
    if not low <= number <= high:
        raise ValueError(f'alertmanager source: {name} must be from {low} to {high}, got {value!r}')
    return number


def parse_args(args: dict[str, t.Any] | None, environ: t.Mapping[str, str] | None = None) -> dict[str, t.Any]:
    """The source's settings from the rulebook's ``args`` (and the token from the environment); ValueError if bad."""
    args = dict(args or {})
    environ = os.environ if environ is None else environ
    unknown = sorted(set(args) - set(DEFAULTS))
    if unknown:
        raise ValueError(f'alertmanager source: unknown argument(s) {", ".join(unknown)}; known: {", ".join(DEFAULTS)}')
    conf = {key: args[key] if args.get(key) is not None else default for key, default in DEFAULTS.items()}
    if not isinstance(conf['host'], str) or not conf['host'] or any(c.isspace() for c in conf['host']):
        raise ValueError(f'alertmanager source: host must be an address to listen on, got {conf["host"]!r}')
    conf['port'] = _as_number('port', conf['port'], int, 0, 65535)
    path = conf['path']
    if not isinstance(path, str) or not path.startswith('/') or any(c in path for c in '?# \t\r\n'):
        raise ValueError(f'alertmanager source: path must start with / and have no query, got {path!r}')
    conf['max_body_bytes'] = _as_number('max_body_bytes', conf['max_body_bytes'], int, 1024, MAX_BODY_LIMIT)
    conf['max_alerts'] = _as_number('max_alerts', conf['max_alerts'], int, 1, 100000)
    conf['read_timeout'] = _as_number('read_timeout', conf['read_timeout'], float, 0.1, 3600)
    conf['require_token'] = _as_bool('require_token', conf['require_token'])
    conf['enabled'] = _as_bool('enabled', conf['enabled'])
    pause_file = conf['pause_file']
    if pause_file is not None and (not isinstance(pause_file, str) or not pause_file.startswith('/')):
        raise ValueError(f'alertmanager source: pause_file must be an absolute path, got {conf["pause_file"]!r}')
    token_env = conf['token_env']
    if not isinstance(token_env, str) or not re.match(r'[A-Za-z_][A-Za-z0-9_]*\Z', token_env):
        raise ValueError(f'alertmanager source: token_env must be an environment variable name, got {token_env!r}')
    token = conf['token'] if conf['token'] not in (None, '') else environ.get(token_env, '')
    if not isinstance(token, str):
        raise ValueError('alertmanager source: token must be a string')
    token = token.strip()
    if token and not TOKEN_CHARS.match(token):
        raise ValueError('alertmanager source: the token must be printable ASCII without spaces')
    if conf['require_token'] and not token:
        raise ValueError(
            f'alertmanager source: require_token is set but no token was given: export {token_env} (or set '
            'require_token to false to accept webhooks without one)')
    conf['token'] = token.encode('ascii') if token else None
    return conf


def paused(conf: dict[str, t.Any]) -> str | None:
    """Why remediation is off now (the kill switch), or None."""
    if not conf['enabled']:
        return 'enabled is false'
    pause_file = conf['pause_file']
    if pause_file and os.path.lexists(pause_file):
        return f'{pause_file} exists'
    return None


# --- the request ------------------------------------------------------------------------------------------------

def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Request line and headers (without the blank line) -> method, path, headers with lower-case names."""
    try:
        text = head.decode('ascii')
    except UnicodeDecodeError:
        raise Refusal(400, 'the request head is not ASCII') from None
    lines = text.split('\r\n')
    parts = lines[0].split(' ')
    if len(parts) != 3 or not parts[0].isalpha() or not parts[0].isupper() or parts[2] not in ('HTTP/1.1', 'HTTP/1.0'):
        raise Refusal(400, 'malformed request line')
    method, target = parts[0], parts[1]
    if not target.startswith('/'):
        raise Refusal(400, 'the request target must be a path')
    headers: dict[str, str] = {}
    if len(lines) - 1 > MAX_HEADERS:
        raise Refusal(431, f'more than {MAX_HEADERS} header fields')
    for line in lines[1:]:
        name, sep, value = line.partition(':')
        if not sep or not name or name != name.strip() or not re.match(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z", name):
            raise Refusal(400, 'malformed header field')
        if any(ord(c) < 0x20 and c != '\t' or c == '\x7f' for c in value):
            raise Refusal(400, 'control character in a header field')
        key = name.lower()
        value = value.strip(' \t')
        if key in headers:
            if key in ('content-length', 'content-type', 'authorization', 'transfer-encoding', 'host'):
                raise Refusal(400, f'header {name} given twice')
            headers[key] = headers[key] + ', ' + value
        else:
            headers[key] = value
    return method, target.split('?', 1)[0], headers


def check_request(conf: dict[str, t.Any], method: str, path: str, headers: dict[str, str]) -> int:
    """Refuse a request before its body is read; the body length to read when it may go on."""
    if path != conf['path']:
        raise Refusal(404, f'nothing here: Alertmanager webhooks go to {conf["path"]}')
    if method != 'POST':
        raise Refusal(405, 'only POST is accepted', {'Allow': 'POST'})
    if conf['token'] is not None:
        scheme, _sep, given = headers.get('authorization', '').partition(' ')
        ok = hmac.compare_digest(given.strip().encode('ascii', 'replace'), conf['token'])
        if scheme.lower() != 'bearer' or not ok:
            raise Refusal(401, 'a valid bearer token is required', {'WWW-Authenticate': 'Bearer'})
    if 'transfer-encoding' in headers:
        raise Refusal(501, 'Transfer-Encoding is not supported: send Content-Length')
    media, *params = [part.strip() for part in headers.get('content-type', '').split(';')]
    if media.lower() != 'application/json':
        raise Refusal(415, 'Content-Type must be application/json')
    for param in params:
        key, _sep, value = param.partition('=')
        if key.strip().lower() == 'charset' and value.strip().strip('"').lower() not in ('utf-8', 'utf8'):
            raise Refusal(415, 'the body must be UTF-8')
    length = headers.get('content-length')
    if length is None:
        raise Refusal(411, 'Content-Length is required')
    if not length.isdigit() or not length.isascii() or len(length) > 12:
        raise Refusal(400, 'Content-Length must be a whole number')
    if int(length) > conf['max_body_bytes']:
        raise Refusal(413, f'the body is over {conf["max_body_bytes"]} bytes')
    return int(length)


# --- the payload ------------------------------------------------------------------------------------------------

def _reject_constant(name: str) -> t.NoReturn:
    raise ValueError(f'{name} is not JSON')


def _no_duplicates(pairs: list[tuple[str, t.Any]]) -> dict[str, t.Any]:
    result: dict[str, t.Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f'key {key!r} given twice')
        result[key] = value
    return result


def _string(value: t.Any, where: str, required: bool = True) -> str:
    if value is None and not required:
        return ''
    if not isinstance(value, str):
        raise Refusal(422, f'{where} must be a string')
    return value


def _string_map(value: t.Any, where: str, required: bool = False, label_names: bool = True) -> dict[str, str]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise Refusal(422, f'{where} must be an object of strings')
    for key, item in value.items():
        if label_names and not LABEL_NAME.match(key):
            raise Refusal(422, f'{where}: {key[:80]!r} is not a label name')
        if not isinstance(item, str):
            raise Refusal(422, f'{where}.{key} must be a string')
    return dict(value)


def parse_payload(body: bytes, max_alerts: int = DEFAULTS['max_alerts']) -> dict[str, t.Any]:
    """Checked Alertmanager webhook payload (version 4) from the request body; Refusal when it is not one."""
    try:
        text = body.decode('utf-8')
    except UnicodeDecodeError:
        raise Refusal(400, 'the body is not UTF-8') from None
    try:
        data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise Refusal(400, 'the JSON is nested too deeply') from None
    except ValueError as exc:
        raise Refusal(400, f'the body is not valid JSON: {str(exc)[:200]}') from None
    if not isinstance(data, dict):
        raise Refusal(422, 'the payload must be a JSON object')
    if data.get('version') != '4':
        raise Refusal(422, 'version must be "4" (the Alertmanager webhook payload)')
    if data.get('status') not in ('firing', 'resolved'):
        raise Refusal(422, 'status must be "firing" or "resolved"')
    payload = {
        'receiver': _string(data.get('receiver'), 'receiver'),
        'status': data['status'],
        'externalURL': _string(data.get('externalURL'), 'externalURL', required=False),
        'groupKey': _string(data.get('groupKey'), 'groupKey', required=False),
        'groupLabels': _string_map(data.get('groupLabels'), 'groupLabels'),
        'commonLabels': _string_map(data.get('commonLabels'), 'commonLabels'),
        'commonAnnotations': _string_map(data.get('commonAnnotations'), 'commonAnnotations', label_names=False),
    }
    truncated = data.get('truncatedAlerts', 0)
    if isinstance(truncated, bool) or not isinstance(truncated, int) or truncated < 0:
        raise Refusal(422, 'truncatedAlerts must be a whole number')
    alerts = data.get('alerts')
    if not isinstance(alerts, list) or not alerts:
        raise Refusal(422, 'alerts must be a non-empty list')
    if len(alerts) > max_alerts:
        raise Refusal(422, f'more than {max_alerts} alerts in one payload')
    payload['alerts'] = []
    for index, alert in enumerate(alerts):
        where = f'alerts[{index}]'
        if not isinstance(alert, dict):
            raise Refusal(422, f'{where} must be an object')
        if alert.get('status') not in ('firing', 'resolved'):
            raise Refusal(422, f'{where}.status must be "firing" or "resolved"')
        labels = _string_map(alert.get('labels'), f'{where}.labels', required=True)
        if not labels.get('alertname'):
            raise Refusal(422, f'{where}.labels must have an alertname')
        payload['alerts'].append({
            'status': alert['status'],
            'labels': labels,
            'annotations': _string_map(alert.get('annotations'), f'{where}.annotations', label_names=False),
            'startsAt': _string(alert.get('startsAt'), f'{where}.startsAt'),
            'endsAt': _string(alert.get('endsAt'), f'{where}.endsAt', required=False),
            'generatorURL': _string(alert.get('generatorURL'), f'{where}.generatorURL', required=False),
            'fingerprint': _string(alert.get('fingerprint'), f'{where}.fingerprint', required=False),
        })
    return payload


def host_from_labels(labels: dict[str, str]) -> str | None:
    """The inventory host an alert is about: label ``host``, else ``instance`` without its port; None if unsafe."""
    value = labels.get('host') or labels.get('instance') or ''
    if not labels.get('host'):
        if value.startswith('['):
            bracketed = re.match(r'\[([0-9A-Fa-f:.]+)\](?::[0-9]{1,5})?\Z', value)
            value = bracketed.group(1) if bracketed else ''
        elif value.count(':') == 1:
            value = value.partition(':')[0]
    if not value:
        return None
    if ':' in value:
        try:
            return str(ipaddress.IPv6Address(value))
        except ValueError:
            return None
    if not HOST_NAME.match(value) or '..' in value or value in RESERVED_HOSTS:
        return None
    return value


def install_dir_from_labels(labels: dict[str, str]) -> str | None:
    """The AnQiCMS instance's install directory (label ``install_dir`` or service ``anqicms:DIR``); None if unsafe."""
    value = labels.get('install_dir')
    if not value:
        match = ANQICMS_SERVICE.match(labels.get('service', ''))
        value = match.group(1) if match else None
    if not value or not INSTALL_DIR.match(value) or value != os.path.normpath(value) or value == '/':
        return None
    return value


def events_from_payload(payload: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    """One rulebook event per alert, with the group's fields and what opsguard reads from the labels."""
    group = {key: payload[key] for key in ('receiver', 'externalURL', 'groupKey', 'groupLabels', 'commonLabels',
                                           'commonAnnotations')}
    events = []
    for alert in payload['alerts']:
        labels = alert['labels']
        host = host_from_labels(labels)
        install_dir = install_dir_from_labels(labels)
        derived: dict[str, t.Any] = {
            'subject': 'anqicms' if install_dir else 'service' if labels.get('service') else 'host',
            'alertname': labels['alertname'],
            'severity': labels.get('severity', ''),
            'service': labels.get('service', ''),
            'unit': labels.get('unit', ''),
        }
        if host:
            derived['host'] = host
        if install_dir:
            derived['install_dir'] = install_dir
        events.append(dict(group, alert=dict(alert), opsguard=derived))
    return events


# --- the server -------------------------------------------------------------------------------------------------

def _response(status: int, document: dict[str, t.Any], headers: dict[str, str] | None = None) -> bytes:
    body = json.dumps(document, sort_keys=True).encode('utf-8') + b'\n'
    lines = [f'HTTP/1.1 {status} {REASONS.get(status, "Error")}', 'Content-Type: application/json',
             f'Content-Length: {len(body)}', 'Connection: close']
    lines.extend(f'{key}: {value}' for key, value in (headers or {}).items())
    return ('\r\n'.join(lines) + '\r\n\r\n').encode('ascii') + body


async def handle_connection(conf: dict[str, t.Any], queue: t.Any, reader: asyncio.StreamReader,
                            writer: t.Any) -> int:
    """Serve one request on a connection and close it; the status answered (0: the client went away)."""
    peer = writer.get_extra_info('peername')
    status, document, headers = 200, {}, {}
    try:
        try:
            head = await asyncio.wait_for(reader.readuntil(b'\r\n\r\n'), conf['read_timeout'])
        except asyncio.LimitOverrunError:
            raise Refusal(431, f'the request head is over {HEAD_LIMIT} bytes') from None
        except asyncio.IncompleteReadError:
            writer.close()
            return 0
        except asyncio.TimeoutError:
            raise Refusal(400, 'timed out reading the request head') from None
        method, path, request_headers = parse_head(head[:-4])
        length = check_request(conf, method, path, request_headers)
        try:
            body = await asyncio.wait_for(reader.readexactly(length), conf['read_timeout'])
        except asyncio.IncompleteReadError:
            writer.close()
            return 0
        except asyncio.TimeoutError:
            raise Refusal(400, 'timed out reading the body') from None
        payload = parse_payload(body, conf['max_alerts'])
        events = events_from_payload(payload)
        why = paused(conf)
        if why:
            LOGGER.warning('remediation paused (%s): %d alert(s) from %s not acted on: %s', why, len(events), peer,
                           ', '.join(sorted({e['opsguard']['alertname'] for e in events})))
            document = {'accepted': 0, 'paused': True}
        else:
            for event in events:
                await queue.put(event)
            document = {'accepted': len(events)}
    except Refusal as refusal:
        status, document, headers = refusal.status, {'error': refusal.message}, refusal.headers
        LOGGER.warning('refused a request from %s: %d %s', peer, status, refusal.message)
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception:  # pylint: disable=broad-except
        LOGGER.exception('unexpected error serving %s', peer)
        status, document, headers = 500, {'error': 'internal error'}, {}
    try:
        writer.write(_response(status, document, headers))
        await asyncio.wait_for(writer.drain(), conf['read_timeout'])
    except (ConnectionError, asyncio.TimeoutError):
        pass
    finally:
        writer.close()
    return status


async def main(queue: t.Any, args: dict[str, t.Any]) -> None:
    """ansible-rulebook's entry point: serve until cancelled."""
    conf = parse_args(args)
    active = [0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if active[0] >= MAX_CONNECTIONS:
            LOGGER.warning('refused a connection from %s: %d connections open', writer.get_extra_info('peername'),
                           active[0])
            try:
                writer.write(_response(503, {'error': 'too many connections, retry later'}, {'Retry-After': '5'}))
            finally:
                writer.close()
            return
        active[0] += 1
        try:
            await handle_connection(conf, queue, reader, writer)
        except ConnectionError:
            writer.close()
        finally:
            active[0] -= 1

    server = await asyncio.start_server(serve, conf['host'], conf['port'], limit=HEAD_LIMIT)
    addresses = ', '.join(str(sock.getsockname()[:2]) for sock in server.sockets)
    LOGGER.info('alertmanager source listening on %s, path %s, token %s', addresses, conf['path'],
                'required' if conf['token'] else 'not required')
    async with server:
        await server.serve_forever()


if __name__ == '__main__':
    class _PrintQueue:
        async def put(self, event: dict[str, t.Any]) -> None:
            print(json.dumps(event, sort_keys=True))

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(_PrintQueue(), {'port': int(os.environ.get('PORT', '5001'))}))
