# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A strict parser of the Prometheus text exposition format (version 0.0.4), for tests only.

It refuses what node_exporter's textfile collector (Go expfmt) refuses, and a little more: a sample without HELP and
TYPE before it, a family split in two, a duplicate series, an unknown escape, an unterminated label value, a bad
metric or label name, a value that is not a float, a missing final newline.
"""

from __future__ import annotations

import re
import typing as t

NAME_RE = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*\Z')
LABEL_RE = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*\Z')
TYPES = ('counter', 'gauge', 'histogram', 'summary', 'untyped')


class ExpositionError(ValueError):
    pass


def _labels(text: str, line: str) -> tuple[dict[str, str], str]:
    """Parse ``{a="x",b="y"}`` at the start of text; return the labels and the rest."""
    labels: dict[str, str] = {}
    i = 1
    while True:
        if text[i:i + 1] == '}':
            return labels, text[i + 1:]
        eq = text.find('=', i)
        if eq < 0:
            raise ExpositionError('no "=" in labels: %r' % line)
        name = text[i:eq]
        if not LABEL_RE.match(name) or name in labels:
            raise ExpositionError('bad or repeated label name %r: %r' % (name, line))
        if text[eq + 1:eq + 2] != '"':
            raise ExpositionError('label value not quoted: %r' % line)
        j = eq + 2
        value = []
        while True:
            if j >= len(text):
                raise ExpositionError('unterminated label value: %r' % line)
            char = text[j]
            if char == '\\':
                nxt = text[j + 1:j + 2]
                if nxt not in ('\\', '"', 'n'):
                    raise ExpositionError('invalid escape \\%s: %r' % (nxt, line))
                value.append({'\\': '\\', '"': '"', 'n': '\n'}[nxt])
                j += 2
                continue
            if char == '"':
                break
            if char == '\n':
                raise ExpositionError('raw newline in a label value')
            value.append(char)
            j += 1
        labels[name] = ''.join(value)
        i = j + 1
        if text[i:i + 1] == ',':
            i += 1
        elif text[i:i + 1] != '}':
            raise ExpositionError('expected "," or "}" after a label: %r' % line)


def _value(text: str, line: str) -> float:
    if text in ('NaN', '+Inf', '-Inf', 'Inf'):
        return float(text.replace('Inf', 'inf').replace('NaN', 'nan'))
    if not re.fullmatch(r'[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?', text):
        raise ExpositionError('bad value %r: %r' % (text, line))
    return float(text)


def parse(text: str) -> dict[str, dict[str, t.Any]]:
    """``{family: {'type', 'help', 'samples': [(labels, value)]}}``; ExpositionError on anything off."""
    if text and not text.endswith('\n'):
        raise ExpositionError('the last line has no newline')
    families: dict[str, dict[str, t.Any]] = {}
    current = None
    series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for line in text.split('\n')[:-1]:
        if not line:
            raise ExpositionError('empty line')
        if line.startswith('#'):
            parts = line.split(' ', 3)
            if len(parts) < 4 or parts[1] not in ('HELP', 'TYPE'):
                raise ExpositionError('bad comment line %r' % line)
            name = parts[2]
            if not NAME_RE.match(name):
                raise ExpositionError('bad metric name %r' % name)
            if name != current:
                if name in families:
                    raise ExpositionError('family %s appears twice' % name)
                families[name] = {'type': None, 'help': None, 'samples': []}
                current = name
            key = parts[1].lower()
            if families[name][key] is not None or families[name]['samples']:
                raise ExpositionError('%s of %s repeated or after its samples' % (parts[1], name))
            if key == 'type' and parts[3] not in TYPES:
                raise ExpositionError('unknown type %r' % parts[3])
            families[name][key] = parts[3]
            continue
        match = re.match(r'[a-zA-Z_:][a-zA-Z0-9_:]*', line)
        if not match:
            raise ExpositionError('bad sample line %r' % line)
        name = match.group(0)
        rest = line[match.end():]
        labels: dict[str, str] = {}
        if rest.startswith('{'):
            labels, rest = _labels(rest, line)
        if not rest.startswith(' '):
            raise ExpositionError('no space before the value: %r' % line)
        fields = rest[1:].split(' ')
        if len(fields) not in (1, 2):
            raise ExpositionError('bad value part: %r' % line)
        value = _value(fields[0], line)
        if name != current or families[name]['help'] is None or families[name]['type'] is None:
            raise ExpositionError('sample of %s without its HELP and TYPE just before' % name)
        key = (name, tuple(sorted(labels.items())))
        if key in series:
            raise ExpositionError('duplicate series %r' % (key,))
        series.add(key)
        families[name]['samples'].append((labels, value))
    return families


def value(families: dict[str, dict[str, t.Any]], name: str, **labels: str) -> float | None:
    """The value of the one sample of ``name`` whose labels include ``labels``; None when absent."""
    found = [v for lab, v in families.get(name, {}).get('samples', []) if all(lab.get(k) == w for k, w in labels.items())]
    if len(found) > 1:
        raise AssertionError('%d samples of %s match %r' % (len(found), name, labels))
    return found[0] if found else None
