"""opsguard_notify_url, the webhook of the action records, is a secret input: a bad one is refused in the input check
of every playbook that takes it, naming the variable but never showing the value, and a good one is never shown either.

Runs the real playbooks against this machine over the local connection, in check mode.
"""
from __future__ import annotations

import json
import pathlib
import subprocess

import pytest

from local_playbook import run_playbook

TOKEN = 'sEcReT-6c1f0a'


def run(tmp_path: pathlib.Path, playbook: str, extra: dict, verbose: bool = False) -> subprocess.CompletedProcess:
    variables = tmp_path / 'vars.json'  # the URL is a secret: through a file, as operators should give it
    variables.write_text(json.dumps(dict({'opsguard_report_dir': str(tmp_path / 'reports')}, **extra)))
    return run_playbook(tmp_path, playbook, '--check', '-e', f'@{variables}', *(['-vv'] if verbose else []))


@pytest.mark.parametrize('playbook', ['emergency_stop', 'recover', 'recycle', 'backup', 'restore'])
@pytest.mark.parametrize('url, message', [
    (f'ftp://hooks.example.com/{TOKEN}', 'opsguard_notify_url must start with http:// or https://'),
    (f'https://ops:{TOKEN}@hooks.example.com/', 'opsguard_notify_url carries user:password@ credentials'),
], ids=['ftp', 'credentials'])
def test_a_bad_webhook_url_is_refused_without_showing_it(tmp_path, playbook, url, message):
    result = run(tmp_path, playbook, {'opsguard_notify_url': url})
    assert result.returncode != 0 and message in result.stdout, result.stdout[-3000:]
    assert TOKEN not in result.stdout + result.stderr
    assert 'TASK [Gather memory facts]' not in result.stdout


def test_a_good_webhook_url_passes_and_is_never_shown(tmp_path):
    result = run(tmp_path, 'emergency_stop', {'opsguard_notify_url': f'https://hooks.example.com/services/{TOKEN}'}, verbose=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert 'TASK [Gather memory facts]' in result.stdout
    assert TOKEN not in result.stdout + result.stderr
