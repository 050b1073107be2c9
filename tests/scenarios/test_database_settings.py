# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database role's extra settings on a 1-host fleet with a real MariaDB: their own drop-in, a restart when it changes.

In file order, on one fleet (lab name ``<OPSGUARD_LAB_NAME>-dbset``):
check mode with --diff shows the new drop-in and restarts nothing -> bind-address set to the host's fleet address:
MariaDB listens there after one restart -> a rerun changes nothing and keeps the server process -> an extra
max_connections replaces the sized one: one restart, the live value is the extra one, and a rerun does not set it back
-> no extra settings: the drop-in is removed, one restart, the sized and Debian defaults are back -> bad names and
values are refused before anything changes. Every outcome is read on the host (ss, systemd, SELECT @@...).
"""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
from typing import Any, Iterator

import pytest

import fleet
from ansible_collections.opsguard.anqicms.tests.utils import ansible_runner
from ansible_collections.opsguard.anqicms.tests.utils.lab import running_fleet

REPO = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / 'tests' / 'roles' / 'database.yml'
LAB = fleet.derived_name('dbset')
HOST = 'node1'
MIB = 1 << 20
EXTRA = '/etc/mysql/mariadb.conf.d/61-anqicms-extra.cnf'
SIZED = '/etc/mysql/mariadb.conf.d/60-anqicms.cnf'
DB_PASSWORD = 'Db-extra-<&>"scen'
# One instance: 1 site x 20 connections + 20 headroom (docs/roles/database.md).
SIZED_MAX_CONNECTIONS = 40


@pytest.fixture(scope='module')
def lab() -> Iterator[fleet.Fleet]:
    with running_fleet(1, '1G', LAB, lab=fleet) as running:
        yield running


class Run:
    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.rc = proc.returncode
        self.out = proc.stdout + proc.stderr
        self.recap = ansible_runner.recap(proc.stdout).get(HOST, {})
        assert DB_PASSWORD not in self.out, 'a password appeared in the ansible-playbook output'

    def changed_tasks(self) -> list[str]:
        """Headers of the tasks and handlers that reported `changed`."""
        task, found = '', []
        for line in self.out.splitlines():
            if line.startswith(('TASK [', 'RUNNING HANDLER [')):
                task = line.rstrip(' *')
            elif line.startswith('changed:'):
                found.append(task)
        return found

    def restarts(self) -> int:
        return sum(1 for task in self.changed_tasks() if 'restart' in task.lower())


def play(lab: fleet.Fleet, extra_settings: dict[str, Any], check: bool = False) -> Run:
    extra = {'database_instances': [{'name': 'site1', 'db_password': DB_PASSWORD}], 'database_memory_bytes': 384 * MIB,
             'database_extra_settings': extra_settings}
    argv = [ansible_runner.tool('ansible-playbook'), '-i', lab.inventory_path, str(PLAYBOOK), '--diff']
    argv += ['--check'] if check else []
    with ansible_runner.private_file(lab.state_dir, 'db-vars-', '.json', json.dumps(extra)) as vars_file:
        proc = subprocess.run(argv + ['-e', f'@{vars_file}'], env=lab.ansible_env(), capture_output=True, text=True,
                              timeout=float(os.environ.get('OPSGUARD_PLAYBOOK_TIMEOUT', '900')), check=False)
    return Run(proc)


def sh(lab: fleet.Fleet, cmd: str) -> str:
    return lab.exec(HOST, cmd, timeout=60).stdout.strip()


def server(lab: fleet.Fleet) -> tuple[str, str]:
    """MariaDB's main PID and the time its unit last became active: both change on every restart."""
    return sh(lab, 'systemctl show -p MainPID --value mariadb'), sh(lab, 'systemctl show -p ActiveEnterTimestampMonotonic --value mariadb')


def listeners(lab: fleet.Fleet) -> list[str]:
    return sorted(line.split()[3] for line in sh(lab, "ss -Htln 'sport = :3306'").splitlines())


def variable(lab: fleet.Fleet, name: str) -> str:
    return sh(lab, f'mysql -N -e "SELECT @@{name}"')


def greets(address: str) -> bool:
    """A MariaDB server answers a TCP connection on address:3306 with its handshake (or a refusal packet)."""
    try:
        with socket.create_connection((address, 3306), timeout=10) as conn:
            conn.settimeout(10)
            return len(conn.recv(128)) > 4
    except OSError:
        return False


def test_check_mode_shows_the_extra_drop_in_and_restarts_nothing(lab):
    address = lab.host(HOST).address
    before = server(lab)
    run = play(lab, {'bind-address': address}, check=True)
    assert run.rc == 0 and run.recap['failed'] == 0, run.out[-4000:]
    assert f'+bind-address = {address}' in run.out, run.out[-4000:]
    assert any('restart MariaDB to apply database_extra_settings' in task for task in run.changed_tasks()), run.changed_tasks()
    assert sh(lab, f'ls {EXTRA} {SIZED} 2>/dev/null; true') == '', 'check mode wrote a drop-in'
    assert server(lab) == before, 'check mode restarted MariaDB'


def test_bind_address_takes_effect_through_the_role(lab):
    address = lab.host(HOST).address
    before = server(lab)
    assert listeners(lab) == ['127.0.0.1:3306'] and not greets(address)
    run = play(lab, {'bind-address': address})
    assert run.rc == 0 and run.recap['failed'] == 0, run.out[-4000:]
    assert run.restarts() == 1, run.changed_tasks()
    assert server(lab)[0] != before[0], 'MariaDB was not restarted'
    assert listeners(lab) == [f'{address}:3306']
    assert greets(address), f'MariaDB does not answer on {address}:3306 from the control node'
    assert sh(lab, f"stat -c '%a %U' {EXTRA}; grep -c bind {SIZED} || true").splitlines() == ['644 root', '0']
    assert f'bind-address = {address}' in sh(lab, f'cat {EXTRA}')


def test_a_rerun_changes_nothing_and_keeps_the_server(lab):
    before = server(lab)
    run = play(lab, {'bind-address': lab.host(HOST).address})
    assert run.rc == 0 and run.recap['changed'] == 0, run.changed_tasks()
    assert server(lab) == before


def test_an_extra_setting_replaces_the_sized_one_with_one_restart(lab):
    address = lab.host(HOST).address
    assert variable(lab, 'max_connections') == str(SIZED_MAX_CONNECTIONS)
    before = server(lab)
    run = play(lab, {'bind-address': address, 'max_connections': 123})
    assert run.rc == 0, run.out[-4000:]
    assert run.restarts() == 1, run.changed_tasks()
    assert server(lab)[0] != before[0]
    assert variable(lab, 'max_connections') == '123'
    assert listeners(lab) == [f'{address}:3306']
    sized = sh(lab, f'cat {SIZED}')
    assert 'max_connections =' not in sized and 'Replaced by database_extra_settings' in sized, sized
    # The role no longer sets the sized value live: a rerun neither changes nor restarts anything.
    middle = server(lab)
    run = play(lab, {'bind-address': address, 'max_connections': 123})
    assert run.rc == 0 and run.recap['changed'] == 0, run.changed_tasks()
    assert server(lab) == middle and variable(lab, 'max_connections') == '123'


def test_no_extra_settings_removes_the_drop_in_with_one_restart(lab):
    before = server(lab)
    run = play(lab, {})
    assert run.rc == 0, run.out[-4000:]
    assert run.restarts() == 1, run.changed_tasks()
    assert sh(lab, f'ls {EXTRA} 2>/dev/null; true') == ''
    assert server(lab)[0] != before[0]
    assert variable(lab, 'max_connections') == str(SIZED_MAX_CONNECTIONS)
    assert listeners(lab) == ['127.0.0.1:3306'], "Debian's 50-server.cnf bind-address is not back"
    middle = server(lab)
    run = play(lab, {})
    assert run.rc == 0 and run.recap['changed'] == 0, run.changed_tasks()
    assert server(lab) == middle


@pytest.mark.parametrize('settings, expected', [
    ({'bind-address=0.0.0.0': '1'}, "'bind-address=0.0.0.0' is not a MariaDB option name"),
    ({'[client]': 'x'}, "'[client]' is not a MariaDB option name"),
    ({'init_connect': 'SET NAMES utf8mb4\nskip-grant-tables'}, 'holds a newline, tab, NUL or another control character'),
    ({'init_connect': 'a\x00b'}, 'holds a newline, tab, NUL or another control character'),
    ({'bind-address': '0.0.0.0', 'BIND_address': '127.0.0.1'}, "MariaDB reads both as bind_address"),
    ({'no_such_option_at_all': 1}, 'unknown variable'),
], ids=['equals in name', 'section in name', 'newline in value', 'NUL in value', 'same name twice', 'unknown option'])
def test_bad_extra_settings_are_refused_before_anything_changes(lab, settings, expected):
    files = f'ls {EXTRA} 2>/dev/null; sha256sum {SIZED}'
    before, state = server(lab), sh(lab, files)
    run = play(lab, dict(settings, max_connections=77))
    assert run.rc != 0 and run.recap['failed'] == 1, run.out[-3000:]
    assert run.recap['changed'] == 0, run.changed_tasks()
    assert expected in run.out, run.out[-3000:]
    assert (server(lab), sh(lab, files)) == (before, state)
    assert variable(lab, 'max_connections') == str(SIZED_MAX_CONNECTIONS)
