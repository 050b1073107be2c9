"""memory_check passes opsguard_memory_facts_options to memory_facts option by option (no templated task
arguments); a key memory_facts does not take is refused in the inputs play, before any host is measured."""
from __future__ import annotations

import json

from test_limit import run


def test_an_unknown_memory_facts_option_is_refused_before_measuring(tmp_path):
    options = json.dumps({'opsguard_memory_facts_options': {'psi_warning': 5, 'bogus': 1}})
    result = run(tmp_path, 'memory_check', 'node1,localhost', '-e', options)
    assert result.returncode != 0
    assert 'memory_facts does not take here: bogus' in result.stdout, result.stdout
    assert 'node1 ' not in result.stdout.split('PLAY RECAP')[1], result.stdout


def test_known_options_reach_the_module_without_a_templated_arguments_warning(tmp_path):
    # No machine has 99.9 % of its memory available: the thresholds make the verdict critical.
    options = json.dumps({'opsguard_memory_facts_options': {'available_warning': 99.95, 'available_critical': 99.9, 'top': 2},
                          'opsguard_fail_on': 'never'})
    result = run(tmp_path, 'memory_check', 'node1,localhost', '-e', options)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'argsplat' not in result.stdout + result.stderr
    report = json.loads((tmp_path / 'reports' / 'memory_check.json').read_text())
    assert [h['verdict'] for h in report['hosts']] == ['critical'], report
