"""Unit tests of memory_check's JUnit report (filter junit_report) and of the report path check (report_file_problems)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings, strategies as st

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.filter.fleet import fleet_report
from ansible_collections.opsguard.anqicms.plugins.filter.junit import (
    MAX_TEXT, FilterModule, junit_report, report_file_problems, xml_text)

MIB = 1048576


def memory(verdict: str, reasons: list[str], culprit: str | None = None) -> dict:
    return {'verdict': verdict, 'reasons': reasons,
            'limit': {'bytes': 1536 * MIB, 'source': 'cgroup v2', 'available_bytes': 100 * MIB, 'available_percent': 6.5},
            'culprit': {'name': culprit} if culprit else None, 'pressure': None, 'trend': None}


def result(mem: dict) -> dict:
    return {'changed': False, 'ansible_facts': {'opsguard_memory': mem}}


UNREACHABLE = {'unreachable': True, 'changed': False, 'msg': 'Failed to connect to the host via ssh: Connection refused'}
FAILED = {'failed': True, 'changed': False, 'msg': 'memory_facts: /proc/meminfo has no MemTotal'}


def fleet() -> dict:
    return fleet_report([
        {'host': 'node1', 'result': result(memory('ok', ['1200 MiB (78.1 %) of the limit is available.']))},
        {'host': 'node2', 'result': result(memory('warning', ['Only 18.0 % of the limit is available.']))},
        {'host': 'node3', 'result': result(memory('critical', ['Only 6.5 % of the limit is available.', 'PSI full avg10 is 45.'],
                                                  culprit='anqicms:/opt/anqicms/www'))},
        {'host': 'node4', 'result': UNREACHABLE},
        {'host': 'node5', 'result': FAILED},
    ], 'critical', generated='2026-11-29T10:00:00Z')


def parse(document: str) -> ET.Element:
    """The document as a CI system reads it: UTF-8 bytes, through expat (which refuses any character XML forbids)."""
    assert document.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    return ET.fromstring(document.encode('utf-8'))


def cases(root: ET.Element) -> dict[str, ET.Element]:
    return {case.get('name'): case for case in root.iter('testcase')}


def test_one_case_per_host_with_its_outcome():
    root = parse(junit_report(fleet(), {'node1': ['app'], 'node2': ['app'], 'node3': ['app', 'web'], 'node4': ['database']}))
    assert root.tag == 'testsuites'
    suite = root.find('testsuite')
    for element in (root, suite):
        assert {k: element.get(k) for k in ('tests', 'failures', 'errors', 'skipped')} == \
            {'tests': '5', 'failures': '1', 'errors': '2', 'skipped': '1'}
    assert suite.get('name') == 'memory_check' and suite.get('timestamp') == '2026-11-29T10:00:00Z'
    assert suite.find('properties/property').attrib == {'name': 'fail_on', 'value': 'critical'}
    by_host = cases(root)
    assert list(by_host) == ['node1', 'node2', 'node3', 'node4', 'node5']
    assert [c.get('classname') for c in by_host.values()] == \
        ['memory_check.app', 'memory_check.app', 'memory_check.app', 'memory_check.database', 'memory_check']

    assert [child.tag for child in by_host['node1']] == ['system-out']
    assert by_host['node1'].find('system-out').text == '1200 MiB (78.1 %) of the limit is available.'

    skipped = by_host['node2'].find('skipped')
    assert skipped.get('message') == 'Only 18.0 % of the limit is available.'

    failure = by_host['node3'].find('failure')
    assert failure.get('type') == 'critical'
    assert failure.get('message') == 'Only 6.5 % of the limit is available. PSI full avg10 is 45.'
    assert failure.text.splitlines() == ['Only 6.5 % of the limit is available.', 'PSI full avg10 is 45.',
                                         'culprit: anqicms:/opt/anqicms/www',
                                         'available: %d of %d bytes (limit source: cgroup v2)' % (100 * MIB, 1536 * MIB)]

    unreachable = by_host['node4'].find('error')
    assert unreachable.get('type') == 'unreachable' and unreachable.get('message') == 'unreachable: ' + UNREACHABLE['msg']
    failed = by_host['node5'].find('error')
    assert failed.get('type') == 'failed' and failed.get('message') == 'check failed: ' + FAILED['msg']
    assert all(len(case.findall('failure') + case.findall('error') + case.findall('skipped')) <= 1 for case in by_host.values())


def test_the_error_kind_of_a_report_without_the_failure_field():
    report = fleet()
    for row in report['hosts']:
        row.pop('failure')
    by_host = cases(parse(junit_report(report)))
    assert by_host['node4'].find('error').get('type') == 'unreachable'
    assert by_host['node5'].find('error').get('type') == 'failed'


def test_an_unexpected_verdict_is_an_error():
    report = {'hosts': [{'host': 'x', 'verdict': 'purple', 'reasons': []}]}
    root = parse(junit_report(report, suite='fleet'))
    error = cases(root)['x'].find('error')
    assert error.get('type') == 'unknown' and error.get('message') == 'unknown'
    assert root.get('errors') == '1' and root.get('name') == 'fleet' and root.find('testsuite').get('timestamp') is None


@pytest.mark.parametrize('groups, classname', [
    ({'h': ['all', 'ungrouped']}, 'memory_check'), ({'h': 'web'}, 'memory_check.web'), ({'h': ['', 'all', 'b', 'a']}, 'memory_check.b'),
    ({}, 'memory_check'), (None, 'memory_check'), ({'h': 7}, 'memory_check')])
def test_classname_is_the_first_group(groups, classname):
    root = parse(junit_report({'hosts': [{'host': 'h', 'verdict': 'ok', 'reasons': []}]}, groups))
    assert cases(root)['h'].get('classname') == classname


@pytest.mark.parametrize('report, groups, suite, message', [
    (None, None, 'memory_check', 'the input must be the report of opsguard.anqicms.fleet_report'),
    ({'hosts': 'node1'}, None, 'memory_check', 'the input must be the report'),
    ({'hosts': [{'verdict': 'ok'}]}, None, 'memory_check', 'every host of the report must be a dict with a host name'),
    ({'hosts': ['node1']}, None, 'memory_check', 'every host of the report must be a dict with a host name'),
    ({'hosts': []}, ['node1'], 'memory_check', 'host_groups must be a dict'),
    ({'hosts': []}, None, ' ', 'suite must be a non-empty string'),
    ({'hosts': []}, None, 5, 'suite must be a non-empty string'),
])
def test_bad_input_is_refused(report, groups, suite, message):
    with pytest.raises(AnsibleFilterError, match=message):
        junit_report(report, groups, suite)


def test_an_empty_fleet_is_an_empty_suite():
    root = parse(junit_report({'hosts': [], 'fail_on': 'never'}))
    assert root.get('tests') == '0' and not list(root.iter('testcase'))


@pytest.mark.parametrize('raw, shown', [
    ('plain ]]> <b>&amp;</b> "quoted"', 'plain ]]> <b>&amp;</b> "quoted"'),
    ('bell\x07 esc\x1b[31m nul\x00', 'bell\\x07 esc\\x1b[31m nul\\x00'),
    ('cr\r\nlf\ttab', 'cr\\x0d\nlf\ttab'),
    ('lone \udc80 surrogate', 'lone \\udc80 surrogate'),
    ('non-characters \ufffe\uffff', 'non-characters \\ufffe\\uffff'),
    ('emoji \U0001f4a5 and \u00e9', 'emoji \U0001f4a5 and \u00e9'),
    (b'bytes \xff', 'bytes \\udcff'),
    (None, ''),
    (42, '42'),
])
def test_xml_text_keeps_what_xml_carries_and_shows_the_rest(raw, shown):
    assert xml_text(raw) == shown
    parsed = parse(junit_report({'hosts': [{'host': 'h', 'verdict': 'ok', 'reasons': [raw]}]}))
    if shown:
        assert cases(parsed)['h'].find('system-out').text == shown
    failure = cases(parse(junit_report({'hosts': [{'host': raw or 'h', 'verdict': 'critical', 'reasons': [raw]}]}))).popitem()[1]
    assert failure.get('name') == (shown or 'h') and (failure.find('failure').text or '') == shown
    assert failure.find('system-out') is None


def test_long_text_is_cut():
    assert xml_text('x' * (MAX_TEXT + 10)) == 'x' * (MAX_TEXT - 3) + '...'
    root = parse(junit_report({'hosts': [{'host': 'h', 'verdict': 'critical', 'reasons': ['y' * 5000, 'z'] + ['r'] * 60}]}))
    failure = cases(root)['h'].find('failure')
    assert len(failure.get('message')) == 1024 and failure.get('message').endswith('...')
    assert failure.text.splitlines()[-1] == '(12 more reasons in memory_check.json)'


HOSTILE = st.text(alphabet=st.characters(exclude_categories=()), max_size=40) | st.sampled_from(
    [']]>', '<![CDATA[x]]>', '\x00', '\r\n', '&#0;', '"\'<>&', '\ud800', '\ufffe', '<!DOCTYPE x [<!ENTITY a "b">]>'])
VERDICTS = st.sampled_from(['ok', 'warning', 'critical', 'unknown', 'other'])


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.fixed_dictionaries({
    'host': HOSTILE.filter(bool), 'verdict': VERDICTS, 'reasons': st.lists(HOSTILE, max_size=4),
    'culprit': st.none() | HOSTILE, 'failure': st.sampled_from([None, 'unreachable', 'failed']),
    'trend': st.none() | st.lists(HOSTILE, max_size=3), 'limit_source': HOSTILE}), max_size=8),
    generated=HOSTILE, fail_on=HOSTILE, suite=HOSTILE.filter(lambda s: bool(s.strip())),
    groups=st.dictionaries(HOSTILE, st.lists(HOSTILE, max_size=3), max_size=5))
def test_any_hostile_text_gives_a_document_that_parses_and_counts_right(rows, generated, fail_on, suite, groups):
    document = junit_report({'hosts': rows, 'generated': generated, 'fail_on': fail_on}, groups, suite)
    root = parse(document)
    found = list(root.iter('testcase'))
    assert [case.get('name') for case in found] == [xml_text(row['host']) for row in rows]
    expected = {'tests': len(rows), 'skipped': sum(r['verdict'] == 'warning' for r in rows),
                'failures': sum(r['verdict'] == 'critical' for r in rows),
                'errors': sum(r['verdict'] not in ('ok', 'warning', 'critical') for r in rows)}
    for element in (root, root.find('testsuite')):
        assert {key: int(element.get(key)) for key in expected} == expected
    assert sum(len(case.findall(tag)) for case in found for tag in ('skipped', 'failure', 'error')) == \
        expected['skipped'] + expected['failures'] + expected['errors']
    for case, row in zip(found, rows):
        reasons = [xml_text(r) for r in row['reasons']]
        out = case.find('system-out')
        passed = row['verdict'] == 'ok'
        assert (out.text if out is not None else None) == ('\n'.join(reasons) or None if passed else None)
        if not passed:
            details = next(child for child in case if child.tag in ('skipped', 'failure', 'error')).text or ''
            assert details.startswith('\n'.join(reasons))


def test_report_file_problems(tmp_path, monkeypatch):
    (tmp_path / 'afile').write_text('x')
    (tmp_path / 'adir').mkdir()
    name = 'opsguard_junit_report'
    assert report_file_problems(str(tmp_path / 'new' / 'deeper' / 'r.xml'), name) == []
    assert report_file_problems(str(tmp_path / 'afile'), name) == []          # replaced atomically
    assert report_file_problems('reports/r.xml', name, str(tmp_path)) == []
    assert report_file_problems(str(tmp_path / 'adir'), name) == \
        ['opsguard_junit_report must name a file, but %s is a directory.' % (tmp_path / 'adir')]
    assert report_file_problems('adir', name, str(tmp_path)) == \
        ['opsguard_junit_report must name a file, but %s is a directory.' % (tmp_path / 'adir')]
    assert report_file_problems('reports/', name, str(tmp_path)) == \
        ['opsguard_junit_report must name a file, not a directory: %s/reports/.' % tmp_path]
    assert report_file_problems(str(tmp_path / 'afile' / 'sub' / 'r.xml'), name) == \
        ['opsguard_junit_report cannot be written: %s is not a directory.' % (tmp_path / 'afile')]
    assert report_file_problems('r.xml', name, 'rel') == \
        ["opsguard_junit_report is relative (r.xml) and the current directory 'rel' is not an absolute path: give an absolute path."]
    monkeypatch.chdir(tmp_path)
    assert report_file_problems('adir', name) == \
        ['opsguard_junit_report must name a file, but %s is a directory.' % (tmp_path / 'adir')]
    assert report_file_problems('afile/r.xml', name) == \
        ['opsguard_junit_report cannot be written: %s is not a directory.' % (tmp_path / 'afile')]
    for bad in ('', '  ', None, 5):
        assert report_file_problems(bad, name)[0].startswith('opsguard_junit_report must be a file path')
    assert 'without NUL or newline' in report_file_problems('/tmp/a\x00b', name)[0]
    assert not (tmp_path / 'new').exists()   # a check writes nothing


def test_filters_are_exported():
    assert set(FilterModule().filters()) == {'junit_report', 'report_file_problems'}
