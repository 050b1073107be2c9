# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Backup workflow driven with an in-memory database server: what it writes, publishes, verifies and refuses."""
from __future__ import annotations

import json
import os

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import PARTIAL_PREFIX, BackupError, verify_backup
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_workflow import Backup
from ansible_collections.opsguard.anqicms.plugins.module_utils.mysql_client import MysqlError
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.fake_mariadb import FakeServer, factory


def hexed(text: str) -> str:
    return text.encode('utf-8').hex()


def backup_params(path: str, dest: str, **extra) -> dict:
    params = {'path': path, 'instance': None, 'dest': dest, 'exe': None, 'sites': None, 'cold': False, 'verify': False,
              'compare_live': False, 'keep': None, 'keep_days': None, 'timeout': 60, 'login_user': None, 'login_password': None,
              'login_host': None, 'login_port': None, 'login_unix_socket': None}
    params.update(extra)
    return params


def two_sites(tmp_path, shared: bool = False) -> tuple:
    """An instance 'shop' (site 1) and a second site at its own root, with a fake server holding their databases."""
    inst = tmp_path / 'shop'
    (inst / 'public').mkdir(parents=True)
    (inst / 'public' / 'a.txt').write_text('site one upload')
    (inst / 'config.json').write_text(json.dumps({'mysql': {'database': 'shop', 'user': 'app', 'password': 'pw'}}))
    two = tmp_path / 'two'
    (two / 'template').mkdir(parents=True)
    (two / 'template' / 'index.html').write_text('site two template')
    second_db = 'shop' if shared else 'two'
    rows = [['1', hexed('/ignored'), hexed('one'), '', '1'],
            ['2', hexed(str(two)), hexed('two'), hexed(json.dumps({'database': second_db, 'use_default': True})), '1']]
    server = FakeServer({'shop': {'websites': 2, 'archives': 10}, 'two': {'posts': 3}}, sites_rows=rows)
    return inst, two, server


def test_backup_writes_every_site_and_publishes_a_verifiable_backup(tmp_path):
    inst, two, server = two_sites(tmp_path)
    warnings: list = []
    result = Backup(backup_params(str(inst), str(tmp_path / 'dest')), client_factory=factory(server), running=lambda exe: [],
                    warn=warnings.append).run()
    manifest = verify_backup(result['backup_path'])
    assert result['changed'] and [s['id'] for s in result['sites']] == [1, 2]
    assert sorted(a['name'] for a in result['artifacts']) == sorted(a['name'] for a in manifest['artifacts'])
    assert [(s['id'], s['database'], s['root']) for s in manifest['sites']] == [(1, 'shop', str(inst)), (2, 'two', str(two))]
    assert os.listdir(tmp_path / 'dest' / 'shop') == [result['backup_id']], 'no partial directory may stay'
    assert all(c.closed for c in server.clients) and server.clients
    assert warnings == []


def test_a_database_shared_by_two_sites_is_dumped_once(tmp_path):
    inst, dummy, server = two_sites(tmp_path, shared=True)
    result = Backup(backup_params(str(inst), str(tmp_path / 'dest')), client_factory=factory(server), running=lambda exe: []).run()
    manifest = verify_backup(result['backup_path'])
    kinds = [a['kind'] for a in manifest['artifacts']]
    assert kinds.count('db') == 1 and kinds.count('files') == 2
    assert manifest['sites'][1]['db_shared_with'] == 1 and manifest['sites'][1]['db_artifact'] == manifest['sites'][0]['db_artifact']


def test_verify_records_table_stats_and_drops_the_scratch_database(tmp_path):
    inst, dummy, server = two_sites(tmp_path)
    before = server.state()
    result = Backup(backup_params(str(inst), str(tmp_path / 'dest'), verify=True), client_factory=factory(server),
                    running=lambda exe: []).run()
    manifest = verify_backup(result['backup_path'])
    for site in manifest['sites']:
        assert site['tables'] == dict((t, {'rows': n, 'checksum': str(n * 7)}) for t, n in before[site['database']].items())
    assert server.state() == before, 'the scratch databases must be dropped again'
    assert any(s.startswith('CREATE DATABASE `opsguard_verify_') for s in server.statements)


def test_check_mode_writes_nothing(tmp_path):
    inst, dummy, server = two_sites(tmp_path)
    result = Backup(backup_params(str(inst), str(tmp_path / 'dest'), keep=2), client_factory=factory(server),
                    running=lambda exe: []).run(check_mode=True)
    assert not result['changed'] and result['msg'].startswith('would back up 2 site(s) of shop')
    assert not (tmp_path / 'dest').exists() and 'backup_id' not in result


def test_a_cold_backup_of_a_running_instance_is_refused_before_any_database_contact(tmp_path):
    inst, dummy, server = two_sites(tmp_path)
    with pytest.raises(BackupError, match=r'cold backup of shop was asked for, but the instance runs \(PIDs \[4242\]'):
        Backup(backup_params(str(inst), str(tmp_path / 'dest'), cold=True), client_factory=factory(server),
               running=lambda exe: [4242]).run()
    assert server.clients == [] and not (tmp_path / 'dest').exists()


@pytest.mark.parametrize('fail_on', ['CREATE DATABASE `opsguard_verify_', 'DROP DATABASE IF EXISTS `opsguard_verify_'])
def test_a_failure_while_writing_removes_the_partial_backup(tmp_path, fail_on):
    inst, dummy, server = two_sites(tmp_path)
    server.fail = lambda sql: 'ERROR 1044 (42000): Access denied' if sql.startswith(fail_on) else None
    backup = Backup(backup_params(str(inst), str(tmp_path / 'dest'), verify=True), client_factory=factory(server),
                    running=lambda exe: [])
    with pytest.raises(MysqlError, match='Access denied'):
        backup.run()
    assert os.listdir(tmp_path / 'dest' / 'shop') == [], 'neither a backup nor a partial directory may stay'
    assert [s['id'] for s in backup.report['sites']] == [1, 2], 'what was known stays in the report'
    assert all(c.closed for c in server.clients)


def test_an_unreadable_sites_table_names_the_database_and_the_config(tmp_path):
    inst, dummy, server = two_sites(tmp_path)
    server.fail = lambda sql: "ERROR 1146 (42S02): Table 'shop.websites' doesn't exist" if 'FROM websites' in sql else None
    with pytest.raises(BackupError, match='cannot read the sites of instance shop from database shop .*config.json right'):
        Backup(backup_params(str(inst), str(tmp_path / 'dest')), client_factory=factory(server), running=lambda exe: []).run()
    assert not (tmp_path / 'dest').exists()


def test_files_changed_while_archived_are_a_warning(tmp_path, monkeypatch):
    from ansible_collections.opsguard.anqicms.plugins.module_utils import backup_workflow

    real = backup_workflow.archive_files

    def changing(root: str, dest: str) -> dict:
        return dict(real(root, dest), changed_while_read='tar: public/a.txt: file changed as we read it')

    monkeypatch.setattr(backup_workflow, 'archive_files', changing)
    inst, dummy, server = two_sites(tmp_path)
    warnings: list = []
    Backup(backup_params(str(inst), str(tmp_path / 'dest'), sites=[1]), client_factory=factory(server), running=lambda exe: [],
           warn=warnings.append).run()
    assert warnings == ['site 1: files changed while they were archived (hot backup): tar: public/a.txt: file changed as we read it']


def test_no_partial_prefix_is_ever_published(tmp_path):
    inst, dummy, server = two_sites(tmp_path)
    for dummy_run in range(2):
        Backup(backup_params(str(inst), str(tmp_path / 'dest'), keep=1), client_factory=factory(server), running=lambda exe: []).run()
    names = os.listdir(tmp_path / 'dest' / 'shop')
    assert len(names) == 1 and not names[0].startswith(PARTIAL_PREFIX), names
