# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The memory_facts module on this machine's real /proc: results, check mode, option errors, no third-party library."""

from __future__ import annotations

import json
import os
import sys
import typing as t

import pytest
import yaml

from ansible.module_utils.testing import patch_module_args

from ansible_collections.opsguard.anqicms.plugins.modules import memory_facts


def run(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any]) -> dict[str, t.Any]:
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            memory_facts.main()
    out = capsys.readouterr().out
    return json.loads(out)


def meminfo_kib(key: str) -> int:
    with open('/proc/meminfo', encoding='ascii') as handle:
        for line in handle:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    raise AssertionError('%s not in /proc/meminfo' % key)


def test_real_host_facts(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, {'top': 3})
    assert result.get('failed') is not True, result
    assert result['changed'] is False
    facts = result['ansible_facts']['opsguard_memory']
    assert facts['verdict'] in ('ok', 'warning', 'critical')
    # the payload is returned once, as the fact: nothing of it at the top level of the result
    assert not set(facts) & set(result), sorted(set(facts) & set(result))
    assert facts['system']['total'] == meminfo_kib('MemTotal') * 1024
    assert facts['system']['swap_total'] == meminfo_kib('SwapTotal') * 1024
    assert 0 < facts['limit']['bytes'] <= facts['system']['total']
    assert facts['limit']['source'] in ('meminfo', 'cgroup v1', 'cgroup v2')
    assert len(facts['top']) == 3
    # the module's own process (here: the test process) is not a service
    assert not [s for s in facts['services'] if os.getpid() in s['pids']]
    assert all(p['pid'] != os.getpid() for p in facts['top'])
    parent = [s for s in facts['services'] if os.getppid() in s['pids']]
    assert len(parent) == 1 and parent[0]['rss_bytes'] > 0
    assert facts['trend'] is None
    assert facts['reasons'] and isinstance(facts['notes'], list)
    assert all(s['in_limit'] is True for s in facts['services'])
    assert all(s['in_limit'] is False and s['share_of_limit'] is None for s in facts['outside_limit'])
    assert all(0 <= s['share_of_limit'] <= 100 for s in facts['services'] if s['share_of_limit'] is not None)


def test_check_mode_returns_the_same_facts(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, {'_ansible_check_mode': True, 'detailed': False})
    assert result.get('failed') is not True, result
    assert result['changed'] is False
    facts = result['ansible_facts']['opsguard_memory']
    assert facts['system']['total'] == meminfo_kib('MemTotal') * 1024
    assert all(s['uss_bytes'] is None for s in facts['services'])


@pytest.mark.parametrize('args, expected', [
    ({'available_warning': 5, 'available_critical': 10}, 'available_critical=10.0 must be below available_warning=5.0'),
    ({'psi_warning': 50, 'psi_critical': 20}, 'psi_critical=20.0 must be above psi_warning=50.0'),
    ({'sample_seconds': 5, 'samples': 2}, 'samples=2: use between 3 (fewer cannot tell a trend) and 60'),
    ({'sample_seconds': 5, 'samples': 1000}, 'samples=1000: use between 3'),
    ({'sample_seconds': -1}, 'sample_seconds=-1.0 must be between 0 and 3600'),
    ({'matchers': [{'name': 'shop', 'kind': 'anqicms'}]}, 'matcher shop matches nothing'),
    ({'matchers': [{'name': 'shop', 'cmdline': '[unclosed'}]}, 'not a valid regular expression'),
    ({'cgroup': '/no/such/cgroup.service'}, 'cgroup /no/such/cgroup.service does not exist'),
    # issue 11 item 6: NaN and path traversal were accepted silently
    ({'sample_seconds': 'nan'}, 'sample_seconds=nan must be between 0 and 3600'),
    ({'sample_seconds': float('inf')}, 'sample_seconds=inf must be between 0 and 3600'),
    ({'sample_seconds': 1e308}, 'sample_seconds=1e+308 must be between 0 and 3600'),
    ({'cgroup': '../../../../proc'}, 'cgroup=\'../../../../proc\' contains ".."'),
    ({'cgroup': ''}, "cgroup='' is empty"),
    ({'cgroup': '/a\x00b'}, 'contains control characters'),
    ({'available_warning': 'nan'}, 'available_warning=nan is not a percentage between 0 and 100'),
    ({'swap_critical': '-inf'}, 'swap_critical=-inf is not a percentage'),
    ({'leak_mib_per_minute': 'inf'}, 'leak_mib_per_minute=inf must be above 0 and at most 1048576'),
    ({'oom_window': 2 ** 64}, 'oom_window=1.8446744073709552e+19 must be between 0 and 315360000'),
    ({'samples': 0}, 'samples=0: use between 3'),
    ({'top': 2 ** 64}, 'top=18446744073709551616 must be between 0 and 10000'),
    ({'top': -1}, 'top=-1 must be between 0 and 10000'),
    ({'matchers': [{'name': 'shop', 'cmdline': 'a{4294967296}'}]}, 'not a valid regular expression'),
    ({'matchers': [{'name': 'shop', 'exe': ['/srv/\x00']}]}, 'without NUL bytes'),
])
def test_bad_options_fail_clearly(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any], expected: str) -> None:
    result = run(capsys, args)
    assert result['failed'] is True
    assert expected in result['msg']
    assert ('on %s' % os.uname()[1]) in result['msg']


def test_unknown_kind_is_refused_by_the_argument_spec(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, {'matchers': [{'name': 'x', 'kind': 'java', 'exe': ['/x']}]})
    assert result['failed'] is True and 'kind' in result['msg'] and 'anqicms' in result['msg']


def test_no_third_party_library_is_needed(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """psutil cannot be imported (as on a host without python3-psutil): the module still answers."""
    monkeypatch.setitem(sys.modules, 'psutil', None)
    result = run(capsys, {'top': 1, 'detailed': False})
    assert result.get('failed') is not True, result
    assert result['ansible_facts']['opsguard_memory']['process_count'] >= 1


def test_argument_spec_matches_the_documentation() -> None:
    doc = yaml.safe_load(memory_facts.DOCUMENTATION)['options']
    spec = memory_facts.argument_spec()
    assert set(doc) == set(spec)
    for name, option in spec.items():
        assert doc[name]['type'] == option['type'], name
        assert doc[name].get('default') == option.get('default'), name
    assert set(doc['matchers']['suboptions']) == set(spec['matchers']['options'])
    returned = yaml.safe_load(memory_facts.RETURN)
    assert set(returned) == {'ansible_facts'}
    documented = returned['ansible_facts']['contains']['opsguard_memory']['contains']
    result_keys = {'system', 'limit', 'cgroup', 'pressure', 'pressure_note', 'oom', 'services', 'top', 'trend',
                   'verdict', 'reasons', 'culprit', 'notes', 'process_count', 'thresholds', 'counted_cgroup', 'outside_limit',
                   'textfile'}
    assert result_keys == set(documented)
