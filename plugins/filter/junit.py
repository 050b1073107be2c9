# Copyright: opsguard maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""memory_check's fleet report as a JUnit XML document, so CI systems show the fleet's state as test results.

``junit_report`` turns the report of ``fleet_report`` into one test case per host: ``ok`` passes, ``warning`` is
skipped with its reasons, ``critical`` is a failure, a host that was unreachable or whose check failed is an error.
Host names and reasons come from the hosts and are untrusted: every character XML 1.0 cannot carry is written as a
visible escape (``\\x1b``), so the document always parses. ``report_file_problems`` checks, before anything is
measured, that a report path names a file that can be written.
Documentation: junit_report.yml and report_file_problems.yml next to this file.
"""

from __future__ import annotations

import os
import re
import typing as t
import xml.etree.ElementTree as ET
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

DEFAULT_SUITE = 'memory_check'
SKIP_GROUPS = frozenset(('all', 'ungrouped'))
MAX_TEXT = 4096        # characters of one host name, reason or culprit
MAX_MESSAGE = 1024     # characters of a message attribute (one line in most CI views)
MAX_REASONS = 50       # reasons shown per host
# Characters XML 1.0 cannot carry, plus carriage return (a parser turns it into a newline) and the
# non-characters U+FFFE/U+FFFF: everything outside Char minus CR.
_NOT_XML = re.compile('[^\t\n\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]')


def _escape_char(match: re.Match) -> str:
    code = ord(match.group())
    return '\\x%02x' % code if code < 0x100 else '\\u%04x' % code


def xml_text(value: t.Any, limit: int = MAX_TEXT) -> str:
    """``value`` as text XML 1.0 can carry: invalid characters as visible escapes, at most ``limit`` characters."""
    if value is None:
        return ''
    if isinstance(value, bytes):
        value = value.decode('utf-8', errors='surrogateescape')
    text = _NOT_XML.sub(_escape_char, str(value))
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _map(value: t.Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _list(value: t.Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []


def _classname(suite: str, host: str, host_groups: Mapping) -> str:
    """``<suite>.<group>``: the host's first group in the order given, ``all`` and ``ungrouped`` left out."""
    groups = host_groups.get(host)
    groups = [groups] if isinstance(groups, str) else _list(groups)
    group = next((str(g) for g in groups if g and str(g) not in SKIP_GROUPS), None)
    return '%s.%s' % (suite, group) if group else suite


def _outcome(row: Mapping) -> tuple[str | None, str]:
    """(element, type) of a host's row: (None, 'ok'), ('skipped', 'warning'), ('failure', 'critical'), ('error', kind)."""
    verdict = row.get('verdict')
    if verdict == 'ok':
        return None, 'ok'
    if verdict == 'warning':
        return 'skipped', 'warning'
    if verdict == 'critical':
        return 'failure', 'critical'
    kind = row.get('failure') if row.get('failure') in ('unreachable', 'failed') else None
    if kind is None:
        first = str((_list(row.get('reasons')) or [''])[0])
        kind = 'unreachable' if first.startswith('unreachable:') else 'failed' if first.startswith('check failed:') else 'unknown'
    return 'error', kind


def _details(row: Mapping, reasons: list[str]) -> str:
    """The body of a non-passing case: the reasons one per line, then the culprit and the memory figures."""
    lines = list(reasons)
    more = len(_list(row.get('reasons'))) - len(reasons)
    if more > 0:
        lines.append('(%d more reasons in memory_check.json)' % more)
    if row.get('culprit'):
        lines.append('culprit: %s' % xml_text(row.get('culprit')))
    if row.get('available_bytes') is not None or row.get('limit_bytes') is not None:
        lines.append('available: %s of %s bytes (limit source: %s)' % (
            xml_text(row.get('available_bytes'), 40), xml_text(row.get('limit_bytes'), 40), xml_text(row.get('limit_source'), 64)))
    suspects = [xml_text(s, 256) for s in _list(row.get('trend'))[:20]]
    if suspects:
        lines.append('leak suspects: %s' % ', '.join(suspects))
    return '\n'.join(lines)


def junit_report(report: t.Any, host_groups: t.Any = None, suite: t.Any = DEFAULT_SUITE) -> str:
    """The JUnit XML document (a string) of a fleet report of ``fleet_report``: one test case per host."""
    if not isinstance(report, Mapping) or not isinstance(report.get('hosts'), (list, tuple)):
        raise AnsibleFilterError('junit_report: the input must be the report of opsguard.anqicms.fleet_report '
                                 '(a dict with a list of hosts), got %s' % type(report).__name__)
    if host_groups is not None and not isinstance(host_groups, Mapping):
        raise AnsibleFilterError('junit_report: host_groups must be a dict {host: [group, ...]}, got %s' % type(host_groups).__name__)
    if not isinstance(suite, str) or not suite.strip():
        raise AnsibleFilterError('junit_report: suite must be a non-empty string, got %r' % (suite,))
    suite = xml_text(suite.strip(), 256)
    groups = _map(host_groups)
    rows = []
    for row in report['hosts']:
        if not isinstance(row, Mapping) or row.get('host') in (None, ''):
            raise AnsibleFilterError('junit_report: every host of the report must be a dict with a host name, got %r' % (row,))
        rows.append(row)
    counts = {'tests': len(rows), 'failures': 0, 'errors': 0, 'skipped': 0}
    timestamp = xml_text(report.get('generated'), 64)
    root = ET.Element('testsuites', name=suite)
    testsuite = ET.SubElement(root, 'testsuite', name=suite)
    if timestamp:
        testsuite.set('timestamp', timestamp)
    properties = ET.SubElement(testsuite, 'properties')
    ET.SubElement(properties, 'property', name='fail_on', value=xml_text(report.get('fail_on'), 64))
    for row in rows:
        host = xml_text(row['host'])
        element, kind = _outcome(row)
        reasons = [xml_text(r) for r in _list(row.get('reasons'))[:MAX_REASONS]]
        case = ET.SubElement(testsuite, 'testcase', classname=xml_text(_classname(suite, str(row['host']), groups), 512),
                             name=host, time='0')
        message = xml_text(' '.join(reasons) or kind, MAX_MESSAGE)
        if element is not None:
            outcome = ET.SubElement(case, element, message=message)
            if element != 'skipped':
                outcome.set('type', kind)
            outcome.text = _details(row, reasons)
            counts[{'skipped': 'skipped', 'failure': 'failures', 'error': 'errors'}[element]] += 1
        elif ''.join(reasons):
            ET.SubElement(case, 'system-out').text = '\n'.join(reasons)
    for element in (root, testsuite):
        for key in ('tests', 'failures', 'errors', 'skipped'):
            element.set(key, str(counts[key]))
        element.set('time', '0')
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding='unicode') + '\n'


def report_file_problems(path: t.Any, name: t.Any = 'the report path', cwd: t.Any = None) -> list[str]:
    """Why ``path`` cannot be written as a report file; [] when it can. Reads, never writes.

    A relative path is relative to ``cwd``, by default the current directory of the control node's process
    (where ``ansible.builtin.realpath`` resolves it too).
    """
    if not isinstance(path, str) or not path.strip():
        return ['%s must be a file path, got %r.' % (name, path)]
    if '\x00' in path or '\n' in path:
        return ['%s must be a path without NUL or newline characters, got %r.' % (name, path)]
    if not os.path.isabs(path):
        cwd = os.getcwd() if cwd is None else cwd
        if not isinstance(cwd, str) or not os.path.isabs(cwd):
            return ['%s is relative (%s) and the current directory %r is not an absolute path: give an absolute path.'
                    % (name, path, cwd)]
        path = os.path.join(cwd, path)
    if path.endswith('/') or os.path.basename(path) in ('.', '..'):
        return ['%s must name a file, not a directory: %s.' % (name, path)]
    full = os.path.normpath(path)
    if os.path.isdir(full):
        return ['%s must name a file, but %s is a directory.' % (name, full)]
    parent = os.path.dirname(full)
    while parent and not os.path.lexists(parent):
        parent = os.path.dirname(parent) if os.path.dirname(parent) != parent else ''
    if parent and not os.path.isdir(parent):
        return ['%s cannot be written: %s is not a directory.' % (name, parent)]
    return []


class FilterModule:
    """JUnit report of memory_check."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {
            'junit_report': junit_report,
            'report_file_problems': report_file_problems,
        }
