# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One record per action: a structured journald entry and, optionally, the same record POSTed to a webhook.

The journal entry goes straight to journald's native datagram socket (``/run/systemd/journal/socket``), no
``systemd-cat``, no python-systemd: field names are checked (uppercase letters, digits, underscores, at most 64
characters, a letter first), values holding a line break use the binary length-prefixed form, and every value is cut
to :data:`MAX_VALUE_BYTES`. Without journald the result says so; nothing here ever raises.

The webhook gets an Alertmanager-style JSON body (one alert per record; docs/records.md of the collection has the
schema). Delivery is bounded: at most :data:`ATTEMPTS` tries with a doubling pause, each try at most
:data:`ATTEMPT_TIMEOUT` seconds, the whole delivery at most :data:`DEADLINE` seconds, enforced by a daemon thread
(name resolution included). The URL may carry a token: it is checked up front, never put in a message or a result
(only ``scheme://host:port``), TLS certificates are verified, redirects are not followed.

Small on purpose: modules that call it run on hosts short of memory. ``urllib.request`` and ``ssl`` are imported only
when a webhook is set.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import threading
import time

JOURNAL_SOCKET = '/run/systemd/journal/socket'
IDENTIFIER = 'opsguard'
# MESSAGE_ID of every action record (journalctl MESSAGE_ID=... lists them all, whichever program wrote them).
MESSAGE_ID = '8d5c1f3e2a7b4e06b3f1c9d0a4e6b217'
FIELD_NAME = re.compile(r'[A-Z][A-Z0-9_]{0,63}')
CONTROL = re.compile(rb'[\x00-\x08\x0a-\x1f\x7f]')
MAX_VALUE_BYTES = 2048
MAX_EXTRA_FIELDS = 24
# Fields every record has, set from the arguments of build(): extra fields may not take these names.
RESERVED = frozenset(('MESSAGE', 'MESSAGE_ID', 'PRIORITY', 'SYSLOG_IDENTIFIER', 'ACTION', 'INSTANCE', 'OUTCOME', 'REASON', 'HOST'))
FAILED_OUTCOMES = frozenset(('failed', 'rolled_back', 'not_rolled_back'))
WARNING_OUTCOMES = frozenset(('stopped_forced', 'timed_out'))
SEND_TIMEOUT = 1.0
URL_MAX = 2048
DEADLINE = 5.0
ATTEMPT_TIMEOUT = 2.0
ATTEMPTS = 3
BACKOFF = 0.25
USER_AGENT = 'opsguard.anqicms-record'


# ---------------------------------------------------------------- the record


def field_problems(fields) -> list:
    """Why the extra ``fields`` (a dict name -> value) cannot go into a record; names are matched case-insensitively."""
    if fields is None:
        return []
    if not isinstance(fields, dict):
        return ['fields must be a dictionary of names and values, got %s' % type(fields).__name__]
    problems = []
    if len(fields) > MAX_EXTRA_FIELDS:
        problems.append('fields has %d entries; at most %d fit in one record' % (len(fields), MAX_EXTRA_FIELDS))
    for name in fields:
        upper = name.upper() if isinstance(name, str) else None
        if upper is None or not FIELD_NAME.fullmatch(upper):
            problems.append('fields name %s is not a journal field name: a letter, then letters, digits or underscores, '
                            'at most 64 characters' % short(name))
        elif upper in RESERVED:
            problems.append('fields name %s is set by the record itself (%s); choose another name'
                            % (short(name), ', '.join(sorted(RESERVED))))
    return problems


def build(action: str, instance: str, outcome: str, reason: str = '', fields=None, host: str | None = None,
          now: float | None = None) -> dict:
    """The record: ``ACTION``, ``INSTANCE``, ``OUTCOME``, ``REASON``, ``HOST``, ``TIME`` and the extra fields
    (names upper-cased, None values left out). Raises ValueError for extra fields that :func:`field_problems` refuses."""
    problems = field_problems(fields)
    if problems:
        raise ValueError('; '.join(problems))
    record = {'ACTION': str(action), 'INSTANCE': str(instance), 'OUTCOME': str(outcome), 'REASON': str(reason or ''),
              'HOST': host or hostname(), 'TIME': _rfc3339(time.time() if now is None else now)}
    for name, value in (fields or {}).items():
        if value is not None:
            record[name.upper()] = value
    return record


def message(record: dict) -> str:
    """One line for people: ``stop of www on node2: stopped_gracefully (memory pressure), 512.0 MiB freed``."""
    text = '%s of %s on %s: %s' % (record['ACTION'], record['INSTANCE'], record['HOST'], record['OUTCOME'])
    if record.get('REASON'):
        text += ' (%s)' % record['REASON']
    freed = record.get('RSS_FREED')
    if isinstance(freed, int) and not isinstance(freed, bool) and freed > 0:
        text += ', %.1f MiB freed' % (freed / 1048576.0)
    return text


def priority(outcome: str) -> int:
    """syslog priority: 3 (err) for a failure, 4 (warning) for a forced or timed-out action, 5 (notice) otherwise."""
    if outcome in FAILED_OUTCOMES:
        return 3
    return 4 if outcome in WARNING_OUTCOMES else 5


def text_value(value) -> str:
    """A field value as text: numbers and strings as they are, booleans as true/false, lists and dicts as JSON."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float, str)):
        return str(value)
    try:
        return json.dumps(value, sort_keys=True, separators=(',', ':'), default=str)
    except (TypeError, ValueError):
        return str(value)


def _truncated(raw: bytes, limit: int = MAX_VALUE_BYTES) -> bytes:
    if len(raw) <= limit:
        return raw
    note = b'...[%d bytes cut]' % (len(raw) - limit)
    cut = raw[:limit - len(note)]
    # Do not leave half a UTF-8 character behind.
    while cut and (cut[-1] & 0xC0) == 0x80:
        cut = cut[:-1]
    if cut and cut[-1] >= 0xC0:
        cut = cut[:-1]
    return cut + note


def journal_fields(record: dict) -> list:
    """(NAME, bytes) pairs of the journal entry, in order: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, MESSAGE_ID, then the record."""
    fields = [('MESSAGE', message(record)), ('PRIORITY', str(priority(record['OUTCOME']))),
              ('SYSLOG_IDENTIFIER', IDENTIFIER), ('MESSAGE_ID', MESSAGE_ID)]
    fields += [(name, text_value(value)) for name, value in record.items() if name != 'TIME']
    out = []
    for name, value in fields:
        if not FIELD_NAME.fullmatch(name):  # build() checked them; a record put together by hand is checked here
            continue
        out.append((name, _truncated(value.encode('utf-8', 'replace'))))
    return out


def encode(fields: list) -> bytes:
    """journald's native protocol: ``NAME=value\\n``, or for a value with a line break or another control character
    ``NAME\\n`` + 64-bit little-endian length + value + ``\\n``."""
    parts = []
    for name, value in fields:
        key = name.encode('ascii')
        if CONTROL.search(value):
            parts.append(key + b'\n' + struct.pack('<Q', len(value)) + value + b'\n')
        else:
            parts.append(key + b'=' + value + b'\n')
    return b''.join(parts)


def parse(data: bytes) -> list:
    """The (NAME, bytes) pairs of a native-protocol datagram (the inverse of :func:`encode`; used by the tests)."""
    out = []
    pos = 0
    while pos < len(data):
        end = data.index(b'\n', pos)
        line = data[pos:end]
        if b'=' in line:
            name, value = line.split(b'=', 1)
            out.append((name.decode('ascii'), value))
            pos = end + 1
        else:
            size = struct.unpack('<Q', data[end + 1:end + 9])[0]
            out.append((line.decode('ascii'), data[end + 9:end + 9 + size]))
            if data[end + 9 + size:end + 10 + size] != b'\n':
                raise ValueError('binary field %s is not followed by a line break' % line.decode('ascii', 'replace'))
            pos = end + 10 + size
    return out


def send_journal(data: bytes, path: str = JOURNAL_SOCKET, timeout: float = SEND_TIMEOUT) -> str | None:
    """Send one entry to journald; None when it was accepted, else why not (never raises)."""
    if not os.path.exists(path):
        return 'no journald on this host (%s does not exist)' % path
    sock = None
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.settimeout(timeout)  # a journald that does not read (itself short of memory) must not hold the action
        sock.sendto(data, path)
    except (OSError, ValueError) as exc:
        return 'journald did not take the record: %s' % (getattr(exc, 'strerror', None) or exc)
    finally:
        if sock is not None:
            sock.close()
    return None


# ---------------------------------------------------------------- the webhook


def url_problem(url, option: str = 'notify_url') -> str | None:
    """Why ``url`` is no usable webhook URL for ``option``; the message never repeats the URL (it may carry a token)."""
    hidden = '(value not shown: it may carry a token)'
    if not isinstance(url, str) or not url:
        return '%s must be a non-empty http:// or https:// URL %s' % (option, hidden)
    if len(url) > URL_MAX:
        return '%s is %d characters long; at most %d are accepted %s' % (option, len(url), URL_MAX, hidden)
    if not url.isascii() or any(ch <= ' ' or ch == '\x7f' for ch in url):
        return '%s must be ASCII without spaces or control characters (percent-encode them) %s' % (option, hidden)
    from urllib.parse import urlsplit  # pylint: disable=import-outside-toplevel
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return '%s is not a URL with a valid host and port %s' % (option, hidden)
    if parts.scheme.lower() not in ('http', 'https'):
        return '%s must start with http:// or https:// %s' % (option, hidden)
    if '@' in parts.netloc:
        return ('%s carries user:password@ credentials, which are not sent; put the token in the path or the query '
                'string %s' % (option, hidden))
    if not parts.hostname:
        return '%s has no host %s' % (option, hidden)
    if port == 0:
        return '%s has port 0 %s' % (option, hidden)
    return None


def describe_url(url: str) -> str:
    """``scheme://host[:port]`` of a checked URL: what a message or a result may show."""
    from urllib.parse import urlsplit  # pylint: disable=import-outside-toplevel
    parts = urlsplit(url)
    host = parts.hostname or '?'
    if ':' in host:
        host = '[%s]' % host
    return '%s://%s%s' % (parts.scheme.lower(), host, ':%d' % parts.port if parts.port else '')


def webhook_body(record: dict) -> dict:
    """The JSON POSTed: Alertmanager's webhook format (version 4) with one alert, plus ``record``, the typed record."""
    labels = {'alertname': 'OpsguardAction', 'action': record['ACTION'], 'instance': record['INSTANCE'],
              'host': record['HOST'], 'outcome': record['OUTCOME'], 'severity': _severity(record['OUTCOME'])}
    annotations = {'summary': message(record), 'reason': record.get('REASON', '')}
    for name, value in record.items():
        if name not in ('ACTION', 'INSTANCE', 'HOST', 'OUTCOME', 'REASON', 'TIME'):
            annotations[name.lower()] = _truncated(text_value(value).encode('utf-8', 'replace')).decode('utf-8', 'replace')
    alert = {'status': 'firing', 'labels': labels, 'annotations': annotations, 'startsAt': record['TIME'],
             'endsAt': record['TIME'], 'generatorURL': '', 'fingerprint': ''}
    return {
        'version': '4', 'status': 'firing', 'receiver': IDENTIFIER,
        'groupKey': '{}:{action="%s", instance="%s", host="%s"}' % (labels['action'], labels['instance'], labels['host']),
        'truncatedAlerts': 0, 'groupLabels': {'alertname': 'OpsguardAction'}, 'commonLabels': dict(labels),
        'commonAnnotations': dict(annotations), 'externalURL': '', 'alerts': [alert],
        'record': dict((name.lower(), _json_value(value)) for name, value in record.items()),
    }


def post(url: str, body: dict, deadline: float = DEADLINE, attempts: int = ATTEMPTS,
         attempt_timeout: float = ATTEMPT_TIMEOUT, backoff: float = BACKOFF) -> dict:
    """POST ``body`` as JSON to ``url``: ``{'webhook': 'delivered'|'failed', 'webhook_error', 'webhook_attempts',
    'webhook_target'}``. Never raises and never takes longer than ``deadline`` seconds (plus thread start)."""
    state = {'webhook': 'failed', 'webhook_error': None, 'webhook_attempts': 0, 'webhook_target': describe_url(url)}
    lock = threading.Lock()
    data = json.dumps(body, sort_keys=True, default=str).encode('utf-8')
    end = time.monotonic() + deadline
    worker = threading.Thread(target=_deliver, args=(url, data, end, attempts, attempt_timeout, backoff, state, lock),
                              name='opsguard-webhook', daemon=True)
    worker.start()
    worker.join(max(deadline, 0.0) + 0.05)
    with lock:
        result = dict(state)
        state['abandoned'] = True
    if worker.is_alive():
        result['webhook'] = 'failed'
        result['webhook_error'] = 'no answer within the %.1f s deadline (gave up%s)' % (
            deadline, '; last problem: %s' % result['webhook_error'] if result['webhook_error'] else '')
    return result


def _deliver(url, data, end, attempts, attempt_timeout, backoff, state, lock) -> None:
    try:
        import urllib.error  # pylint: disable=import-outside-toplevel
        import urllib.request  # pylint: disable=import-outside-toplevel
        opener = _opener(url)
        for attempt in range(1, attempts + 1):
            remaining = end - time.monotonic()
            if remaining <= 0.01:
                break
            with lock:
                if state.get('abandoned'):
                    return
                state['webhook_attempts'] = attempt
            request = urllib.request.Request(url, data=data, method='POST', headers={
                'Content-Type': 'application/json', 'User-Agent': USER_AGENT})
            retry = True
            try:
                with opener.open(request, timeout=min(attempt_timeout, remaining)) as response:
                    response.read(65536)
                    code = response.status
                problem = None if 200 <= code < 300 else 'the receiver answered HTTP %d' % code
                retry = False
            except urllib.error.HTTPError as exc:
                code = exc.code
                problem = 'the receiver answered HTTP %d' % code
                if 300 <= code < 400:
                    problem += ' (a redirect, which is not followed: give the final URL)'
                retry = code in (408, 425, 429) or code >= 500
            except urllib.error.URLError as exc:
                problem = 'cannot reach the receiver: %s' % _reason(exc.reason)
            except (OSError, ValueError) as exc:  # timeouts, resets, TLS errors, bad status lines
                problem = 'cannot reach the receiver: %s' % _reason(exc)
            with lock:
                if state.get('abandoned'):
                    return
                if problem is None:
                    state['webhook'] = 'delivered'
                    state['webhook_error'] = None
                    return
                state['webhook_error'] = _scrub(problem, url)
            if not retry or attempt == attempts:
                return
            pause = min(backoff * (2 ** (attempt - 1)), end - time.monotonic())
            if pause > 0:
                time.sleep(pause)
    except Exception as exc:  # pylint: disable=broad-except
        with lock:
            state['webhook_error'] = _scrub('unexpected error: %s: %s' % (type(exc).__name__, exc), url)


def _opener(url: str):
    """An opener that verifies certificates, follows no redirect and uses the host's proxy settings."""
    import urllib.request  # pylint: disable=import-outside-toplevel

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):  # pylint: disable=too-many-arguments
            return None

    handlers = [NoRedirect()]
    if url[:6].lower() == 'https:':
        import ssl  # pylint: disable=import-outside-toplevel
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context()))
    return urllib.request.build_opener(*handlers)


def _reason(reason) -> str:
    if isinstance(reason, socket.timeout) or 'timed out' in str(reason):
        return 'timed out'
    return str(getattr(reason, 'strerror', None) or reason)


def _scrub(text: str, url: str) -> str:
    """``text`` without the URL or the parts of it that may hold a token (path, query)."""
    from urllib.parse import urlsplit  # pylint: disable=import-outside-toplevel
    parts = urlsplit(url)
    secrets = [url, parts.path + ('?' + parts.query if parts.query else ''), parts.query, parts.path]
    for secret in sorted(set(s for s in secrets if len(s) > 1), key=len, reverse=True):
        text = text.replace(secret, '<hidden>')
    return text


# ---------------------------------------------------------------- one call


def emit(record: dict, notify_url: str | None = None, journal_socket: str | None = None,
         deadline: float = DEADLINE) -> dict:
    """Write ``record`` to the journal and, with ``notify_url``, POST it. What was recorded (for a module result):
    ``journal`` (bool), ``journal_error``, ``webhook`` (``delivered``, ``failed`` or ``off``), ``webhook_error``,
    ``webhook_attempts``, ``webhook_target`` (``scheme://host:port``), ``seconds`` (what recording took), ``fields``
    (the record). Never raises."""
    started = time.monotonic()
    result = {'journal': False, 'journal_error': None, 'webhook': 'off', 'webhook_error': None, 'webhook_attempts': 0,
              'seconds': 0.0, 'fields': dict((k, _json_value(v)) for k, v in record.items())}
    try:
        problem = send_journal(encode(journal_fields(record)), journal_socket or JOURNAL_SOCKET)
    except Exception as exc:  # pylint: disable=broad-except
        problem = 'the record could not be encoded: %s: %s' % (type(exc).__name__, exc)
    result['journal'] = problem is None
    result['journal_error'] = problem
    if notify_url:
        problem = url_problem(notify_url)
        if problem:
            result.update(webhook='failed', webhook_error=problem)
        else:
            result.update(post(notify_url, webhook_body(record), deadline=deadline))
    result['seconds'] = round(time.monotonic() - started, 3)
    return result


def for_module(params: dict, action: str, instance: str, outcome: str, fields: dict | None = None,
               check_mode: bool = False) -> dict:
    """The record of a module's own action, written unless ``params['record']`` is false or in check mode; the
    ``recorded`` result. ``params`` holds the options of :func:`option_problems`. Never raises."""
    if check_mode:
        return not_recorded('check mode: nothing recorded')
    if not params.get('record', True):
        return not_recorded('record=false: nothing recorded')
    try:
        entry = build(action, instance, outcome, params.get('record_reason') or '', fields)
    except Exception as exc:  # pylint: disable=broad-except
        return not_recorded('the record could not be built: %s: %s' % (type(exc).__name__, exc))
    return emit(entry, params.get('notify_url'))


def option_problems(params: dict) -> list:
    """Problems with a module's record options (``notify_url``, ``record_instance``, ``record_reason``), naming each
    option and never repeating the URL."""
    problems = []
    if params.get('notify_url') is not None:
        problem = url_problem(params['notify_url'])
        if problem:
            problems.append(problem)
    name = params.get('record_instance')
    if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 255
                             or any(ord(ch) < 32 or ord(ch) == 127 for ch in name)):
        problems.append('record_instance must be 1 to 255 characters without control characters, got %s' % short(name))
    reason = params.get('record_reason')
    if reason is not None and (not isinstance(reason, str) or len(reason) > 1024):
        problems.append('record_reason must be text of at most 1024 characters, got %s' % short(reason))
    return problems


def not_recorded(why: str) -> dict:
    """The ``recorded`` result of an action that writes no record (record=false, check mode)."""
    return {'journal': False, 'journal_error': why, 'webhook': 'off', 'webhook_error': None, 'webhook_attempts': 0,
            'seconds': 0.0, 'fields': {}}


def _severity(outcome: str) -> str:
    return {3: 'critical', 4: 'warning'}.get(priority(outcome), 'info')


def _json_value(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)


def _rfc3339(when: float) -> str:
    return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(when)) + '.%03dZ' % int((when % 1) * 1000)


def hostname() -> str:
    try:
        return os.uname()[1]
    except OSError:
        return 'unknown'


def short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + '...'
