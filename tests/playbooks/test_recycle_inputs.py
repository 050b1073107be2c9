"""The recycle playbook refuses bad inputs before measuring, and a plan it cannot carry out before touching anything.

Runs the real playbook against this machine over the local connection, in check mode (it reads memory only).
"""
from __future__ import annotations

import pathlib
import subprocess

import pytest

from local_playbook import run_playbook


def run(tmp_path: pathlib.Path, *extra: str) -> subprocess.CompletedProcess:
    return run_playbook(tmp_path, 'recycle', '--check', '-e', f'opsguard_report_dir={tmp_path}/reports', *extra)


@pytest.mark.parametrize('extra, message', [
    ('{"opsguard_instances": ["node1"]}', 'opsguard_instances entries must be "host:instance"'),
    ('{"opsguard_recycle_limit": 0}', 'opsguard_recycle_limit must be a whole number from 1 to 1000, got 0.'),
    ('{"opsguard_recycle_window": 10}', 'opsguard_recycle_window must be a whole number from 60 to 2592000, got 10.'),
    ('{"opsguard_min_healthy": "120%"}', 'opsguard_min_healthy must be a count'),
    ('{"opsguard_health_timeout": "nan"}', "opsguard_health_timeout must be a whole number from 2 to 3600, got 'nan'."),
])
def test_bad_inputs_are_refused_before_measuring(tmp_path, extra, message):
    result = run(tmp_path, '-e', extra)
    assert result.returncode != 0 and message in result.stdout, result.stdout
    assert 'TASK [Gather memory facts]' not in result.stdout


def test_an_instance_that_is_not_anqicms_is_refused_before_anything(tmp_path):
    result = run(tmp_path, '-e', '{"opsguard_instances": ["node1:/usr/sbin/sshd"]}')
    assert result.returncode != 0, result.stdout
    assert 'TASK [Gather memory facts]' in result.stdout
    assert ('opsguard_instances entry "node1:/usr/sbin/sshd" matches no AnQiCMS instance on a reachable host'
            in result.stdout), result.stdout
    assert 'opsguard.anqicms.emergency_stop' in result.stdout
    assert 'Recycle | batch by batch' not in result.stdout and not (tmp_path / 'reports').exists()


def test_check_mode_shows_the_plan_and_changes_nothing(tmp_path):
    result = run(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'check mode: plan only' in result.stdout and 'at most 3 recycle(s) per instance within 3600 s' in result.stdout
    assert 'changed=0' in result.stdout and not (tmp_path / 'reports').exists()
