# -*- coding: utf-8 -*-
# Copyright (c) opsguard.anqicms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Semantic handling of AnQiCMS ``config.json``.

AnQiCMS rewrites its own ``config.json`` with Go's ``json.MarshalIndent`` (tab indent,
no trailing newline, HTML-escaped strings) and drops keys it does not know. These
helpers compare the parsed JSON instead of bytes, merge only the keys a caller manages
and render a file the same way the application does, so that neither side makes the
other see a change.

Everything that may land in the file is validated first: the values a task sets (types,
ranges, lengths) and the file read back (strict UTF-8 and JSON, no ``NaN``, no duplicate
keys, the types AnQiCMS's Go structs can decode). Nothing here touches the file system.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterator

# Keys AnQiCMS 3.5.8 reads, in the order its Go structs declare them.
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    'mysql': ('database', 'user', 'password', 'host', 'port', 'use_default'),
    'server': ('env', 'port', 'log_level'),
}
# What the Go structs hold: 'int' (Go int, 64 bit), 'bool', 'str'.
GO_TYPES: dict[str, str] = {
    'mysql.database': 'str', 'mysql.user': 'str', 'mysql.password': 'str', 'mysql.host': 'str',
    'mysql.port': 'int', 'mysql.use_default': 'bool',
    'server.env': 'str', 'server.port': 'int', 'server.log_level': 'str',
}
# Longest value a task may set (characters); MariaDB's limits for names, generous ones elsewhere.
MAX_LENGTH: dict[str, int] = {
    'mysql.database': 64, 'mysql.user': 80, 'mysql.host': 255, 'mysql.password': 4096,
    'server.env': 16, 'server.log_level': 32,
}
ENV_CHOICES = ('production', 'development')
PORT_RANGE = (1, 65535)
GO_INT_RANGE = (-2 ** 63, 2 ** 63 - 1)
MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 32
MASK = '********'
_SECRET_KEY = re.compile(r'pass(word|wd|phrase)|pass$|pass_|pwd|secret|token|api_?key|private_?key|credential')
_CONTROL = re.compile(r'[\x00-\x1f\x7f]')

_GO_ESCAPES = {
    '"': '\\"',
    '\\': '\\\\',
    '\n': '\\n',
    '\r': '\\r',
    '\t': '\\t',
    '<': '\\u003c',
    '>': '\\u003e',
    '&': '\\u0026',
    '\u2028': '\\u2028',
    '\u2029': '\\u2029',
}


class ConfigError(Exception):
    """A config.json, or a value meant for it, that cannot be used as it is."""


def fold_key(key: str) -> str:
    """The form in which Go's encoding/json matches an object key to a struct field (case-insensitive)."""
    return key.replace('\u017f', 's').lower()


def is_secret_key(key: Any) -> bool:
    """Whether a key names a password or another secret (its value is masked and never logged)."""
    return isinstance(key, str) and bool(_SECRET_KEY.search(fold_key(key)))


def show(value: Any, limit: int = 60) -> str:
    """A short, printable rendering of a value for an error message."""
    try:
        text = json.dumps(value, ensure_ascii=True, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + '...'


def _json_kind(value: Any) -> str:
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'boolean'
    if isinstance(value, int):
        return 'integer'
    if isinstance(value, float):
        return 'number'
    if isinstance(value, str):
        return 'string'
    if isinstance(value, list):
        return 'array'
    if isinstance(value, dict):
        return 'object'
    return type(value).__name__


# --- reading the file -------------------------------------------------------------------------

def decode_config(data: bytes, path: str = 'config.json') -> str:
    """The text of config.json, refusing what AnQiCMS (Go encoding/json) cannot read back as written."""
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            '%s is larger than %d bytes (an AnQiCMS config.json is under 1 KiB); it was left untouched: '
            'check the path, or repair the file' % (path, MAX_FILE_BYTES))
    if data.startswith(b'\xef\xbb\xbf'):
        raise ConfigError(
            '%s starts with a UTF-8 byte order mark, which AnQiCMS cannot parse; it was left untouched: '
            'save it without the BOM' % path)
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError as exc:
        raise ConfigError(
            '%s is not valid UTF-8 (byte %d: %s); it was left untouched: repair the file or move it away '
            'so that it can be written from scratch' % (path, exc.start, exc.reason)) from exc


def _reject_constant(name: str) -> Any:
    raise ValueError('%s is not a JSON value' % name)


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError('number %s is out of range' % (text[:40]))
    return value


def _no_duplicates(pairs: list) -> dict:
    result: dict = {}
    for key, value in pairs:
        if key in result:
            raise ValueError('duplicate key %s' % show(key))
        result[key] = value
    return result


def check_json(value: Any, where: str, depth: int = 0) -> None:
    """Check that a value can be written as strict JSON: finite numbers, UTF-8 strings, bounded depth."""
    if depth > MAX_DEPTH:
        raise ConfigError('%s is nested more than %d levels deep' % (where, MAX_DEPTH))
    if isinstance(value, str):
        try:
            value.encode('utf-8')
        except UnicodeError as exc:
            raise ConfigError('%s holds a string that is not valid Unicode (unpaired surrogate)' % where) from exc
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError('%s is %s, which JSON cannot hold' % (where, value))
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError('%s has a key %s that is not a string' % (where, show(key)))
            check_json(key, '%s key %s' % (where, show(key)), depth + 1)
            check_json(item, '%s.%s' % (where, key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json(item, '%s[%d]' % (where, index), depth + 1)
    elif value is not None and not isinstance(value, (bool, int)):
        raise ConfigError('%s is a %s, which JSON cannot hold' % (where, type(value).__name__))


def parse_config(text: str, path: str = 'config.json') -> dict[str, Any]:
    """Parse the content of config.json strictly; an empty file is an empty object.

    An empty file is what a kill during AnQiCMS's own (truncating) write leaves behind; treating it
    as an empty object lets the managed settings be written back into it.
    """
    if not text.strip():
        return {}
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float, object_pairs_hook=_no_duplicates)
    except RecursionError as exc:
        raise ConfigError('%s is nested too deeply to be a config.json; it was left untouched: repair the file' % path) from exc
    except ValueError as exc:
        raise ConfigError(
            '%s is not valid JSON (%s); it was left untouched: repair the file or move it away '
            'so that it can be written from scratch' % (path, exc)
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(
            '%s holds a JSON %s where AnQiCMS expects an object; it was left untouched: '
            'repair the file or move it away' % (path, type(data).__name__)
        )
    try:
        check_json(data, 'the document')
    except ConfigError as exc:
        raise ConfigError('%s: %s; it was left untouched: repair the file' % (path, exc)) from exc
    return data


# --- validating what a task sets --------------------------------------------------------------

def check_setting(name: str, value: Any, option: str) -> None:
    """Validate one known setting (``name`` like ``server.port``) given by a task as ``option``."""
    if value is None:
        return
    kind = GO_TYPES[name]
    secret = is_secret_key(name.rsplit('.', 1)[-1])
    shown = '' if secret else ' %s' % show(value)
    if kind == 'int':
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError('%s=%s is a %s; expected an integer port %d-%d' % (option, show(value), _json_kind(value), PORT_RANGE[0], PORT_RANGE[1]))
        if not PORT_RANGE[0] <= value <= PORT_RANGE[1]:
            raise ConfigError('%s=%s is out of range; expected a TCP port %d-%d' % (option, show(value), PORT_RANGE[0], PORT_RANGE[1]))
        return
    if kind == 'bool':
        if not isinstance(value, bool):
            raise ConfigError('%s=%s is a %s; expected true or false' % (option, show(value), _json_kind(value)))
        return
    if not isinstance(value, str):
        raise ConfigError('%s is a %s; expected a string' % (option, _json_kind(value)))
    try:
        value.encode('utf-8')
    except UnicodeError as exc:
        raise ConfigError('%s is not valid Unicode (unpaired surrogate); expected a UTF-8 string' % option) from exc
    limit = MAX_LENGTH[name]
    if len(value) > limit:
        raise ConfigError('%s is %d characters long; expected at most %d' % (option, len(value), limit))
    if secret:
        if '\x00' in value:
            raise ConfigError('%s contains a NUL character; expected a password without NUL' % option)
    elif _CONTROL.search(value):
        raise ConfigError('%s=%s contains a control character; expected printable text' % (option, shown.strip()))
    if name == 'server.env' and value not in ENV_CHOICES:
        raise ConfigError('%s=%s; expected one of %s' % (option, show(value), ', '.join(ENV_CHOICES)))


def check_section(section: str, values: dict[str, Any], option: str) -> None:
    """Validate the known keys of a mysql/server section given as ``option`` (unknown keys: JSON only)."""
    known = {fold_key(key): key for key in KNOWN_KEYS[section]}
    for key, value in values.items():
        name = '%s.%s' % (option, key)
        real = known.get(fold_key(key)) if isinstance(key, str) else None
        if real is not None and real != key:
            raise ConfigError("%s: AnQiCMS reads keys case-insensitively, so %s would be read as %s; use '%s'"
                              % (name, show(key), show(real), real))
        if real is not None:
            check_setting('%s.%s' % (section, key), value, name)
        else:
            check_json(value, name, 2)


def check_settings(settings: dict[str, Any] | None) -> None:
    """Validate the free-form ``settings`` option: JSON-able, and known keys typed like the typed options."""
    if not settings:
        return
    check_json(settings, 'settings')
    sections = {fold_key(key): key for key in KNOWN_KEYS}
    for key, value in settings.items():
        real = sections.get(fold_key(key))
        if real is None:
            continue
        if real != key:
            raise ConfigError("settings.%s: AnQiCMS reads keys case-insensitively, so %s would be read as %s; use '%s'"
                              % (key, show(key), show(real), real))
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ConfigError('settings.%s=%s is a %s; AnQiCMS expects an object with the keys %s'
                              % (key, show(value), _json_kind(value), ', '.join(KNOWN_KEYS[key])))
        check_section(key, value, 'settings.%s' % key)


def check_options(params: dict[str, Any]) -> None:
    """Validate the module options that land in config.json; raise ConfigError naming the first bad one."""
    for section in KNOWN_KEYS:
        values = params.get(section) or {}
        for key in KNOWN_KEYS[section]:
            check_setting('%s.%s' % (section, key), values.get(key), '%s.%s' % (section, key))
    check_settings(params.get('settings'))


def desired_settings(params: dict[str, Any]) -> dict[str, Any]:
    """The document the task asks for: ``settings`` first, the typed ``mysql``/``server`` options over it."""
    desired: dict[str, Any] = dict(params.get('settings') or {})
    for section in KNOWN_KEYS:
        values = params.get(section)
        if values:
            base = desired.get(section)
            merged_section = dict(base) if isinstance(base, dict) else {}
            merged_section.update((k, v) for k, v in values.items() if v is not None)
            desired[section] = merged_section
    return desired


# --- the merged document ----------------------------------------------------------------------

def check_document(data: dict[str, Any], path: str = 'config.json') -> None:
    """Refuse a document AnQiCMS 3.5.8 could not decode into its config structs."""
    fix = 'set it in the task to replace it, or repair the file'
    sections = {fold_key(key): key for key in KNOWN_KEYS}
    for key, value in data.items():
        real = sections.get(fold_key(key))
        if real is None:
            continue
        if real != key:
            raise ConfigError("%s holds the key %s, which AnQiCMS reads as '%s' (keys are matched case-insensitively); "
                              "it was left untouched: rename or remove it" % (path, show(key), real))
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ConfigError('%s holds %s = %s (a JSON %s) where AnQiCMS expects an object and would not start; '
                              'it was left untouched: %s' % (path, key, show(value), _json_kind(value), fix))
        known = {fold_key(name): name for name in KNOWN_KEYS[key]}
        for sub, item in value.items():
            name = '%s.%s' % (key, sub)
            real_sub = known.get(fold_key(sub))
            if real_sub is None:
                continue
            if real_sub != sub:
                raise ConfigError("%s holds the key %s, which AnQiCMS reads as '%s.%s' (keys are matched case-insensitively); "
                                  "it was left untouched: rename or remove it" % (path, show(name), key, real_sub))
            if item is None:
                continue
            kind = GO_TYPES[name]
            shown = 'a value' if is_secret_key(sub) else show(item)
            if kind == 'int':
                good = isinstance(item, int) and not isinstance(item, bool) and GO_INT_RANGE[0] <= item <= GO_INT_RANGE[1]
                expected = 'an integer'
            elif kind == 'bool':
                good = isinstance(item, bool)
                expected = 'true or false'
            else:
                good = isinstance(item, str)
                expected = 'a string'
            if not good:
                raise ConfigError('%s holds %s = %s (a JSON %s) where AnQiCMS expects %s and would not start; '
                                  'it was left untouched: %s' % (path, name, shown, _json_kind(item), expected, fix))


def same_value(left: Any, right: Any) -> bool:
    """JSON equality that does not treat true as 1 or 8001 as "8001"."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        if set(left) != set(right):
            return False
        return all(same_value(left[key], right[key]) for key in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same_value(a, b) for a, b in zip(left, right))
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return left == right
    return type(left) is type(right) and left == right


def drop_unset(settings: dict[str, Any] | None) -> dict[str, Any]:
    """Remove options left at None (not managed) from a nested settings dict."""
    result: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        if value is None:
            continue
        if isinstance(value, dict):
            value = drop_unset(value)
            if not value:
                continue
        result[key] = value
    return result


def merge_settings(current: dict[str, Any], desired: dict[str, Any], prefix: str = '') -> tuple[dict[str, Any], list[str]]:
    """Deep-merge ``desired`` into a copy of ``current``.

    Keys that ``desired`` does not name are kept as they are. Returns the merged
    document and the dotted names of the keys whose value changed. A known integer
    setting held as a float (``8001.0``, which AnQiCMS cannot decode) counts as changed.
    """
    merged: dict[str, Any] = dict(current)
    changed: list[str] = []
    for key, value in desired.items():
        name = prefix + key
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            merged[key], sub = merge_settings(old, value, name + '.')
            changed.extend(sub)
        elif key not in merged or not same_value(old, value) or (GO_TYPES.get(name) == 'int' and isinstance(old, float)):
            merged[key] = value
            changed.append(name)
    return merged, changed


def order_keys(data: dict[str, Any]) -> dict[str, Any]:
    """Put new keys of known sections in the order AnQiCMS writes them; keep existing order."""
    result: dict[str, Any] = {}
    for key, value in data.items():
        known = KNOWN_KEYS.get(key)
        if known and isinstance(value, dict):
            section = {k: value[k] for k in known if k in value}
            section.update((k, v) for k, v in value.items() if k not in section)
            value = section
        result[key] = value
    return result


def go_quote(text: str) -> str:
    """Quote a string the way Go's encoding/json does (HTML-safe escaping)."""
    out = ['"']
    for char in text:
        escaped = _GO_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif ord(char) < 0x20:
            out.append('\\u%04x' % ord(char))
        else:
            out.append(char)
    out.append('"')
    return ''.join(out)


def _render(value: Any, depth: int) -> str:
    if isinstance(value, dict):
        if not value:
            return '{}'
        inner = '\n' + '\t' * (depth + 1)
        items = [go_quote(str(k)) + ': ' + _render(v, depth + 1) for k, v in value.items()]
        return '{' + inner + (',' + inner).join(items) + '\n' + '\t' * depth + '}'
    if isinstance(value, list):
        if not value:
            return '[]'
        inner = '\n' + '\t' * (depth + 1)
        return '[' + inner + (',' + inner).join(_render(v, depth + 1) for v in value) + '\n' + '\t' * depth + ']'
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return json.dumps(value, allow_nan=False)


def render_config(data: dict[str, Any]) -> str:
    """Render like Go ``json.MarshalIndent(v, "", "\\t")``: tab indent, no trailing newline."""
    return _render(data, 0)


# --- secrets ----------------------------------------------------------------------------------

def mask_secrets(data: Any) -> Any:
    """A copy of the document with the value of every secret-named key (at any depth) replaced, for output and diffs."""
    if isinstance(data, dict):
        result = {}
        for key, value in data.items():
            if is_secret_key(key) and value not in (None, '') and not isinstance(value, bool):
                result[key] = MASK
            else:
                result[key] = mask_secrets(value)
        return result
    if isinstance(data, list):
        return [mask_secrets(item) for item in data]
    return data


def _leaves(value: Any, depth: int = 0) -> Iterator[str]:
    if depth > 64:
        return
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item, depth + 1)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, (str, int, float)):
        text = value if isinstance(value, str) else str(value)
        if text:
            yield text


def secret_values(data: Any, depth: int = 0) -> set[str]:
    """Every value held under a secret-named key (at any depth), as strings, to keep out of all output."""
    found: set[str] = set()
    if depth > 64:
        return found
    if isinstance(data, dict):
        for key, value in data.items():
            if is_secret_key(key):
                found.update(_leaves(value))
            else:
                found.update(secret_values(value, depth + 1))
    elif isinstance(data, (list, tuple)):
        for item in data:
            found.update(secret_values(item, depth + 1))
    return found


def plan_update(text: str | None, desired: dict[str, Any], path: str = 'config.json') -> dict[str, Any]:
    """Everything the module needs to decide: current, merged document, changed keys, new content.

    ``text`` is None when the file does not exist. Raises ConfigError when the file cannot be used
    or the result would hold something AnQiCMS cannot decode.
    """
    current = parse_config(text, path) if text is not None else {}
    merged, changed = merge_settings(current, drop_unset(desired))
    merged = order_keys(merged)
    check_document(merged, path)
    exists = text is not None
    needs_write = bool(changed) or not exists
    content = render_config(merged) if needs_write else text
    size = len(content.encode('utf-8'))
    if size > MAX_FILE_BYTES:
        raise ConfigError('the resulting %s would be %d bytes, more than the %d this module reads back; '
                          'nothing was written: manage fewer or shorter settings' % (path, size, MAX_FILE_BYTES))
    return {
        'current': current,
        'merged': merged,
        'changed_keys': changed,
        'needs_write': needs_write,
        'content': content,
    }
