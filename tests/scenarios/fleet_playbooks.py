# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running the collection's fleet playbooks from a scenario test, and reading the outcome on the hosts.

Shared by tests/scenarios/test_playbooks.py (the deployed demo topology) and test_playbooks_single_host.py (one
self-contained host). Not a test file: pytest collects nothing here.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import threading
from typing import Any

import fleet
from ansible_collections.opsguard.anqicms.tests.utils import ansible_runner

REPO = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / 'playbooks'


class Run:
    """One ansible-playbook run against the demo inventory."""

    def __init__(self, proc: subprocess.CompletedProcess, report_dir: pathlib.Path) -> None:
        self.rc = proc.returncode
        self.out = proc.stdout + proc.stderr
        self.report_dir = report_dir
        self.recap = ansible_runner.recap(proc.stdout)

    def report(self, name: str) -> dict[str, Any]:
        return json.loads((self.report_dir / name).read_text(encoding='utf-8'))


def playbook(lab: fleet.Fleet, inventory_path: str, name: str | pathlib.Path, extra: dict[str, Any], tmp: pathlib.Path,
             check: bool = False, on_line: Any = None, shared_ssh: bool = True, lose: dict[str, Any] | None = None,
             timeout: float | None = None) -> Run:
    """Run playbooks/<name>.yml (or the playbook at a path); on_line(line) is called for every output line while it runs.

    shared_ssh=False gives every task its own SSH connection: a host whose network is cut then fails within
    ConnectTimeout instead of leaving ansible waiting on a multiplexed master connection.
    lose={'host': address, 'match': [...]} runs SSH through tests/lab/lossy_ssh.py: that host does not answer the
    module runs whose payload holds every string of ``match``, and answers every other.
    The extra vars go through a private file (0600, removed afterwards); timeout defaults to OPSGUARD_PLAYBOOK_TIMEOUT
    (600 s).
    """
    report_dir = tmp / 'reports'
    extra = dict({'opsguard_report_dir': str(report_dir)}, **extra)
    path = name if isinstance(name, pathlib.Path) else PLAYBOOKS / f'{name}.yml'
    env = lab.ansible_env()
    env['ANSIBLE_INVENTORY'] = inventory_path
    if not shared_ssh:
        env['ANSIBLE_SSH_ARGS'] = '-o ControlMaster=no -o ControlPath=none'
    if lose:
        env['ANSIBLE_SSH_EXECUTABLE'] = str(REPO / 'tests' / 'lab' / 'lossy_ssh.py')
        env['OPSGUARD_LOSSY_SSH'] = json.dumps(dict(lose, log=str(tmp / 'lossy_ssh.log')))
    limit = timeout if timeout is not None else float(os.environ.get('OPSGUARD_PLAYBOOK_TIMEOUT', '600'))  # a busy machine may need more
    with ansible_runner.private_file(tmp, f'{path.stem}-vars-', '.json', json.dumps(extra)) as vars_file, \
            subprocess.Popen([ansible_runner.tool('ansible-playbook'), '-i', inventory_path, str(path), '-e', f'@{vars_file}']
                             + (['--check'] if check else []),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp) as proc:
        lines: list[str] = []
        timer = threading.Timer(limit, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if on_line:
                    on_line(line)
        finally:
            timer.cancel()
        rc = proc.wait()
    return Run(subprocess.CompletedProcess(proc.args, rc, ''.join(lines), ''), report_dir)


def unit_state(lab: fleet.Fleet, host: str) -> tuple[str, str, str]:
    """(ActiveState, UnitFileState, MainPID) of the instance unit, read on the host."""
    out = lab.exec(host, 'systemctl show -p ActiveState,UnitFileState,MainPID anqicms-www.service', timeout=30).stdout
    props = dict(line.split('=', 1) for line in out.splitlines() if '=' in line)
    return props.get('ActiveState', ''), props.get('UnitFileState', ''), props.get('MainPID', '')


def drained(lab: fleet.Fleet) -> list[str]:
    return lab.exec('node1', 'ls /etc/nginx/opsguard-anqicms/drained 2>/dev/null || true', timeout=30).stdout.split()
