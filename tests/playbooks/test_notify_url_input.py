"""opsguard_notify_url, the webhook of the action records, is a secret input: a bad one is refused in the input check
of every playbook that takes it, naming the variable but never showing the value, and a good one is never shown either.

Runs the real playbooks against this machine over the local connection, in check mode.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKEN = 'sEcReT-6c1f0a'


def run(tmp_path: pathlib.Path, playbook: str, extra: dict, verbose: bool = False) -> subprocess.CompletedProcess:
    inventory = tmp_path / 'inventory.yml'
    inventory.write_text('all:\n  children:\n    app:\n      hosts:\n        node1:\n'
                         '          ansible_connection: local\n'
                         f'          ansible_python_interpreter: {sys.executable}\n')
    variables = tmp_path / 'vars.json'  # the URL is a secret: through a file, as operators should give it
    variables.write_text(json.dumps(dict({'opsguard_report_dir': str(tmp_path / 'reports')}, **extra)))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / '.collections'), ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0')
    args = [str(pathlib.Path(sys.executable).with_name('ansible-playbook')), '-i', str(inventory), f'opsguard.anqicms.{playbook}',
            '--check', '-e', f'@{variables}'] + (['-vv'] if verbose else [])
    return subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)


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
