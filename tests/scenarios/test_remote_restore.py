# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup and restore from an app host whose database is on another host.

On the deployed demo topology shared with the playbooks and proxy failover scenarios (``demo_site`` in
tests/scenarios/conftest.py): node1 = MariaDB + nginx (site www), node2 = AnQiCMS www with its database on node1. The
database role creates the dedicated account (database_restore_account) for node2. From node2: a verified backup over TCP to
node1, a row deleted afterwards, restore.yml with opsguard_restore_login_host=node1 brings it back; node2's own
MariaDB (every fleet host runs one) never sees the instance's data, and the instance serves through nginx again.
Contradicting login inputs are refused before any host is touched.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest

import fleet
from ansible_collections.opsguard.anqicms.plugins.filter.database_access import database_grants
from ansible_collections.opsguard.anqicms.plugins.filter.instances import anqicms_instances
from ansible_collections.opsguard.anqicms.tests.utils import ansible_runner

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tests' / 'demo'))
import topology  # noqa: E402  pylint: disable=wrong-import-position

ACCOUNT = 'opsguard_restore'
TIMEOUT = float(os.environ.get('OPSGUARD_PLAYBOOK_TIMEOUT', '900'))  # a busy machine may need more


class Site:
    """The fleet, its inventory (with the restore account for node2) and the account's password."""

    def __init__(self, demo_site: Any) -> None:
        self.lab: fleet.Fleet = demo_site.lab
        self.password = demo_site.restore_password
        self.db_address = demo_site.db_address
        self.inventory = demo_site.inventory

    def playbook(self, name: str, extra: dict[str, Any], report_dir: pathlib.Path) -> subprocess.CompletedProcess:
        """playbooks/<name>.yml with the extra vars in a private file (the password never on a command line)."""
        extra = dict({'opsguard_report_dir': str(report_dir)}, **extra)
        argv = [ansible_runner.tool('ansible-playbook'), '-i', self.inventory, str(REPO / 'playbooks' / f'{name}.yml')]
        log = report_dir / f'{name}.log'  # what ran so far, also after a timeout
        with ansible_runner.private_file(self.lab.state_dir, 'vars-', '.json', json.dumps(extra)) as vars_file, \
                open(log, 'w', encoding='utf-8') as handle:
            proc = subprocess.Popen(argv + ['-e', f'@{vars_file}'], stdout=handle, stderr=subprocess.STDOUT, text=True,
                                    env=self.lab.ansible_env(), cwd=str(report_dir))
            try:
                rc = proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError(f'{name}.yml ran longer than {TIMEOUT} s:\n' + log.read_text(encoding='utf-8')[-4000:]) from None
        return subprocess.CompletedProcess(argv, rc, log.read_text(encoding='utf-8'), '')

    def remote_login(self, prefix: str, **extra: Any) -> dict[str, Any]:
        return dict({f'{prefix}_login_host': self.db_address, f'{prefix}_login_user': ACCOUNT,
                     f'{prefix}_login_password': self.password}, **extra)

    def sql(self, host: str, statement: str) -> str:
        return self.lab.exec(host, ['mysql', '-N', '-B', '-r', '-e', statement], timeout=60).stdout.strip()

    def unit(self) -> tuple[str, str]:
        out = self.lab.exec('node2', 'systemctl show -p ActiveState,MainPID anqicms-www.service', timeout=30).stdout
        props = dict(line.split('=', 1) for line in out.splitlines() if '=' in line)
        return props.get('ActiveState', ''), props.get('MainPID', '')


@pytest.fixture(scope='module')
def site(demo_site: Any) -> Site:
    demo_site.ready()
    return Site(demo_site)


def out(proc: subprocess.CompletedProcess) -> str:
    return (proc.stdout + proc.stderr)[-4000:]


def test_backup_and_restore_from_the_app_host_over_tcp(site, tmp_path):
    grants = site.sql('node1', f"SHOW GRANTS FOR '{ACCOUNT}'@'{site.lab.hosts[1].address}'")
    assert r'`anqicms\_www\_opsg\_%`.*' in grants and r'`anqicms\_www`.*' in grants, grants
    assert 'GRANT USAGE ON *.*' in grants and 'WITH GRANT OPTION' not in grants, grants
    # The role's account task is idempotent with escaped wildcard grants: the same account again changes nothing.
    again = site.lab.run_module('node1', 'community.mysql.mysql_user', {
        'login_unix_socket': '/run/mysqld/mysqld.sock', 'name': ACCOUNT, 'host': site.lab.hosts[1].address,
        'password': site.password, 'update_password': 'always', 'column_case_sensitive': False, 'state': 'present',
        'priv': database_grants(anqicms_instances([{'name': topology.SITE, 'port': topology.PORT}]))}, check=True, timeout=300)
    assert (again.get('failed'), again.get('changed')) == (None, False), again

    posted = site.lab.exec('node2', "curl -s -m 10 -H 'Host: www.demo.test' -d 'title=kept&content=before+the+backup' "
                                    "http://127.0.0.1:8001/api/archive", timeout=30)
    ident = int(json.loads(posted.stdout)['data']['id'])
    count_sql = f'SELECT COUNT(*) FROM anqicms_www.archives WHERE id = {ident}'
    assert site.sql('node1', count_sql) == '1'

    # The restore account is node2's: the backup runs on node2 only (the fleet's other app hosts are the playbooks scenario's).
    run = site.playbook('backup', site.remote_login('opsguard_backup', opsguard_verify=True, opsguard_target='node2'), tmp_path)
    assert run.returncode == 0, out(run)
    backups = site.lab.exec('node2', 'ls /var/backups/anqicms/www', timeout=30).stdout.split()
    assert len(backups) == 1, backups
    manifest = json.loads(site.lab.exec('node2', f'cat /var/backups/anqicms/www/{backups[0]}/manifest.json', timeout=30).stdout)
    assert manifest['verified'] is True and manifest['sites'][0]['database'] == 'anqicms_www', manifest['sites']

    site.sql('node1', f'DELETE FROM anqicms_www.archives WHERE id = {ident}')
    assert site.sql('node1', count_sql) == '0'

    # Contradicting login inputs: refused on the control node, nothing stopped.
    before = site.unit()
    run = site.playbook('restore', {'opsguard_restore_instances': ['node2:www'], 'opsguard_restore': 'latest',
                                    'opsguard_restore_login_host': site.db_address}, tmp_path)
    assert run.returncode != 0 and 'without opsguard_restore_login_password' in run.stdout, out(run)
    run = site.playbook('restore', {'opsguard_restore_instances': ['node2:www'], 'opsguard_restore': 'latest',
                                    'opsguard_restore_login_host': 'db host'}, tmp_path)
    assert run.returncode != 0 and "opsguard_restore_login_host must be a host name or an IP address, got 'db host'" in run.stdout, out(run)
    assert site.unit() == before and before[0] == 'active'

    run = site.playbook('restore', site.remote_login('opsguard_restore', opsguard_restore_instances=['node2:www'],
                                                     opsguard_restore='latest', opsguard_restore_login_port=3306), tmp_path)
    assert run.returncode == 0, out(run)
    assert site.password not in run.stdout + run.stderr
    assert site.sql('node1', count_sql) == '1', 'the restore did not bring the row back on the database host'
    [restored] = json.loads((tmp_path / 'restore.json').read_text(encoding='utf-8'))['restored']
    assert (restored['host'], restored['backup_id']) == ('node2', backups[0]), restored
    [swapped] = restored['databases']
    assert swapped['database'] == 'anqicms_www' and swapped['previous'].startswith('anqicms_www_opsg_old_'), swapped
    databases = site.sql('node1', "SHOW DATABASES LIKE 'anqicms%'").split()
    assert swapped['previous'] in databases and not [d for d in databases if '_opsg_new_' in d], databases
    # node2 runs a MariaDB of its own: neither the backup nor the restore went there.
    assert site.sql('node2', "SHOW DATABASES LIKE 'anqicms%'") == ''

    state = site.unit()
    assert state[0] == 'active' and state[1] != before[1], (state, before)
    via_nginx = site.lab.exec('node1', "curl -s -m 10 -o /dev/null -w '%{http_code}' -H 'Host: www.demo.test' http://127.0.0.1/",
                              timeout=30)
    assert via_nginx.stdout.strip() == '200', via_nginx.stdout
