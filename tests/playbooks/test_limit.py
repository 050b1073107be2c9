"""A --limit that leaves localhost out skips the playbooks' input, plan and report plays: every playbook that
acts on the fleet must then stop at its first task on the hosts, before measuring or changing anything.

Runs the real playbooks against this machine over the local connection (memory_check reads memory only).
"""
from __future__ import annotations

import pathlib
import subprocess

import pytest

from local_playbook import run_playbook

PLAYBOOKS = ['memory_check', 'diagnose', 'emergency_stop', 'recover', 'backup', 'restore', 'recycle']


def run(tmp_path: pathlib.Path, playbook: str, limit: str, *extra: str) -> subprocess.CompletedProcess:
    return run_playbook(tmp_path, playbook, '--limit', limit, '-e', f'opsguard_report_dir={tmp_path}/reports', *extra)


@pytest.mark.parametrize('playbook', PLAYBOOKS)
def test_a_limit_without_localhost_stops_before_anything(tmp_path, playbook):
    result = run(tmp_path, playbook, 'node1', '-e', 'opsguard_restore=latest',
                 '-e', '{"opsguard_restore_instances": ["node1:site1"]}')
    assert result.returncode != 0, result.stdout
    assert "--limit 'node1,localhost'" in result.stdout, result.stdout
    assert 'ok=0' in result.stdout and 'changed=0' in result.stdout, result.stdout
    assert not (tmp_path / 'reports').exists()


def test_a_limit_with_localhost_runs(tmp_path):
    result = run(tmp_path, 'memory_check', 'node1,localhost', '-e', 'opsguard_fail_on=never')
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / 'reports' / 'memory_check.json').is_file()
