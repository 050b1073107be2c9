# -*- coding: utf-8 -*-
# Copyright (c) opsguard.anqicms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Semantic handling of AnQiCMS ``config.json``.

AnQiCMS rewrites its own ``config.json`` with Go's ``json.MarshalIndent`` (tab indent,
no trailing newline, HTML-escaped strings) and drops keys it does not know. These
helpers compare the parsed JSON instead of bytes, merge only the keys a caller manages
and render a file the same way the application does, so that neither side makes the
other see a change.
"""

from __future__ import annotations

import json
from typing import Any

# Keys AnQiCMS 3.5.8 reads, in the order its Go structs declare them.
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    'mysql': ('database', 'user', 'password', 'host', 'port', 'use_default'),
    'server': ('env', 'port', 'log_level'),
}
SECRET_PATHS: tuple[tuple[str, str], ...] = (('mysql', 'password'),)
MASK = '********'

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
    """A config.json that cannot be used as it is."""


def parse_config(text: str, path: str = 'config.json') -> dict[str, Any]:
    """Parse the content of config.json; an empty file is an empty object."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
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
    return data


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
    document and the dotted names of the keys whose value changed.
    """
    merged: dict[str, Any] = dict(current)
    changed: list[str] = []
    for key, value in desired.items():
        name = prefix + key
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            merged[key], sub = merge_settings(old, value, name + '.')
            changed.extend(sub)
        elif key not in merged or not same_value(old, value):
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
    return json.dumps(value)


def render_config(data: dict[str, Any]) -> str:
    """Render like Go ``json.MarshalIndent(v, "", "\\t")``: tab indent, no trailing newline."""
    return _render(data, 0)


def mask_secrets(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of the document with passwords replaced, for output and diffs."""
    result = dict(data)
    for section, key in SECRET_PATHS:
        part = result.get(section)
        if isinstance(part, dict) and part.get(key):
            part = dict(part)
            part[key] = MASK
            result[section] = part
    return result


def plan_update(text: str | None, desired: dict[str, Any], path: str = 'config.json') -> dict[str, Any]:
    """Everything the module needs to decide: current, merged document, changed keys, new content.

    ``text`` is None when the file does not exist.
    """
    current = parse_config(text, path) if text is not None else {}
    merged, changed = merge_settings(current, drop_unset(desired))
    merged = order_keys(merged)
    exists = text is not None
    needs_write = bool(changed) or not exists
    return {
        'current': current,
        'merged': merged,
        'changed_keys': changed,
        'needs_write': needs_write,
        'content': render_config(merged) if needs_write else text,
    }
