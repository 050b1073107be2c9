"""memory_check's JUnit report (opsguard_junit_report): one test case per host, an unreachable host included, written
even when the run fails; a path that cannot take the report is refused in the inputs play, before any host is measured.

Runs the real playbook against this machine over the local connection (memory_check reads memory only) and a host
whose SSH port refuses connections.
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import xml.etree.ElementTree as ET

from local_playbook import run_playbook


def run(tmp_path: pathlib.Path, *extra: str) -> subprocess.CompletedProcess:
    unreachable = ('    database:\n      hosts:\n        gone1:\n'
                   '          ansible_host: 127.0.0.1\n          ansible_port: 1\n          ansible_connection: ssh\n')
    return run_playbook(tmp_path, 'memory_check', '-e', f'opsguard_report_dir={tmp_path}/reports', *extra,
                        more_inventory=unreachable, env={'ANSIBLE_HOST_KEY_CHECKING': '0'})


def cases(path: pathlib.Path) -> tuple[ET.Element, dict[str, ET.Element]]:
    root = ET.fromstring(path.read_bytes())
    return root, {case.get('name'): case for case in root.iter('testcase')}


def test_one_case_per_host_unreachable_as_error_and_written_before_the_run_fails(tmp_path):
    # A relative path is relative to the directory ansible-playbook runs in; its directories are created.
    result = run(tmp_path, '-e', 'opsguard_junit_report=ci/junit/memory_check.xml')
    assert result.returncode != 0, result.stdout        # the unreachable host counts as critical
    assert '1 host(s) at or above' in result.stdout and 'gone1 (unknown)' in result.stdout, result.stdout
    root, by_host = cases(tmp_path / 'ci' / 'junit' / 'memory_check.xml')
    assert sorted(by_host) == ['gone1', 'node1']
    assert {k: root.get(k) for k in ('tests', 'failures', 'errors', 'skipped')} == \
        {'tests': '2', 'failures': '0', 'errors': '1', 'skipped': '0'}
    assert by_host['node1'].get('classname') == 'memory_check.app' and len(by_host['node1']) == 1
    assert by_host['node1'][0].tag == 'system-out'
    error = by_host['gone1'].find('error')
    assert by_host['gone1'].get('classname') == 'memory_check.database'
    assert error.get('type') == 'unreachable' and 'Failed to connect to the host via ssh' in error.get('message')
    report = json.loads((tmp_path / 'reports' / 'memory_check.json').read_text())
    assert {h['host']: h['failure'] for h in report['hosts']} == {'gone1': 'unreachable', 'node1': None}


def test_a_critical_host_is_a_failure(tmp_path):
    # No machine has 99.9 % of its memory available: the thresholds make node1 critical.
    options = json.dumps({'opsguard_memory_facts_options': {'available_warning': 99.95, 'available_critical': 99.9},
                          'opsguard_fail_on': 'never', 'opsguard_junit_report': str(tmp_path / 'memory_check.xml')})
    result = run(tmp_path, '--limit', 'node1,localhost', '-e', options)
    assert result.returncode == 0, result.stdout + result.stderr
    root, by_host = cases(tmp_path / 'memory_check.xml')
    assert list(by_host) == ['node1'] and root.get('failures') == '1' and root.get('errors') == '0'
    failure = by_host['node1'].find('failure')
    assert failure.get('type') == 'critical' and 'is available' in failure.get('message')
    assert root.find('testsuite/properties/property').attrib == {'name': 'fail_on', 'value': 'never'}


def test_a_path_that_cannot_take_the_report_is_refused_before_measuring(tmp_path):
    (tmp_path / 'afile').write_text('x')
    for path, message in ((str(tmp_path), f'opsguard_junit_report must name a file, but {tmp_path} is a directory.'),
                          ('afile/memory_check.xml', f'opsguard_junit_report cannot be written: {tmp_path}/afile is not a directory.'),
                          ('', "opsguard_junit_report must be a path, got ''.")):
        result = run(tmp_path, '-e', json.dumps({'opsguard_junit_report': path}))
        assert result.returncode != 0 and message in result.stdout, result.stdout
        assert 'TASK [Gather memory facts]' not in result.stdout
        assert not (tmp_path / 'reports').exists()
