# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup and restore modules run as Ansible runs them (a JSON args file), for what needs no database."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import FORMAT, write_manifest
from ansible_collections.opsguard.anqicms.plugins.modules import backup as backup_module

COLLECTIONS_ROOT = os.path.abspath(os.path.join(os.path.dirname(backup_module.__file__), *(['..'] * 5)))


def run(name: str, args: dict, tmp_path, check: bool = False) -> dict:
    argfile = tmp_path / ('args-%s.json' % name)
    payload = dict(args, _ansible_check_mode=check)
    argfile.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': payload}))
    env = dict(os.environ, PYTHONPATH=COLLECTIONS_ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run([sys.executable, '-m', 'ansible_collections.opsguard.anqicms.plugins.modules.' + name, str(argfile)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    return json.loads(proc.stdout)


def backup_dir(tmp_path, flip: bool = False):
    directory = tmp_path / 'dest' / 'shop' / '20260101T000000000000Z'
    directory.mkdir(parents=True)
    payload = b'not really gzip, but hashed'
    (directory / 'site1-db.sql.gz').write_bytes(payload[:-1] + (b'X' if flip else payload[-1:]))
    write_manifest(str(directory), {
        'format': FORMAT, 'id': directory.name, 'instance': 'shop', 'complete': True,
        'sites': [{'id': 1, 'database': 'shop', 'root': '/nonexistent', 'db_artifact': 'site1-db.sql.gz', 'files_artifact': None}],
        'artifacts': [{'name': 'site1-db.sql.gz', 'size': len(payload), 'sha256': hashlib.sha256(payload).hexdigest()}]})
    return directory


def test_compare_live_needs_verify(tmp_path):
    result = run('backup', {'path': str(tmp_path), 'dest': str(tmp_path / 'd'), 'compare_live': True}, tmp_path)
    assert result['failed'] and 'compare_live=true needs verify=true' in result['msg']


def test_backup_of_a_directory_without_config_names_the_file(tmp_path):
    result = run('backup', {'path': str(tmp_path / 'shop'), 'dest': str(tmp_path / 'd')}, tmp_path)
    assert result['failed'] and 'shop/config.json does not exist' in result['msg']
    assert not (tmp_path / 'd').exists()


def test_restore_needs_to_know_which_backup(tmp_path):
    result = run('restore', {'path': str(tmp_path / 'shop')}, tmp_path)
    assert result['failed'] and 'dest' in result['msg'] and 'backup_path' in result['msg']


def test_restore_without_backups_says_where_it_looked(tmp_path):
    result = run('restore', {'path': str(tmp_path / 'shop'), 'dest': str(tmp_path / 'dest')}, tmp_path)
    assert result['failed'] and 'no complete backup of instance shop under %s' % (tmp_path / 'dest' / 'shop') in result['msg']


@pytest.mark.parametrize('check', [True, False])
def test_restore_refuses_a_damaged_backup_before_anything_else(tmp_path, check):
    directory = backup_dir(tmp_path, flip=True)
    result = run('restore', {'path': str(tmp_path / 'shop'), 'dest': str(tmp_path / 'dest')}, tmp_path, check=check)
    assert result['failed'] and 'site1-db.sql.gz has sha256' in result['msg']
    assert sorted(os.listdir(directory)) == ['manifest.json', 'site1-db.sql.gz']
    assert not (tmp_path / 'shop').exists()


def test_restore_check_mode_reports_the_plan_of_an_intact_backup(tmp_path):
    backup_dir(tmp_path)
    result = run('restore', {'path': str(tmp_path / 'shop'), 'dest': str(tmp_path / 'dest')}, tmp_path, check=True)
    assert result.get('failed') is not True, result.get('msg')
    assert result['changed'] and result['plan'][0]['database'] == 'shop'
    assert result['plan'][0]['staging_database'].startswith('shop_opsg_new_')
    assert not (tmp_path / 'shop').exists()


def test_restore_refuses_a_backup_of_another_instance(tmp_path):
    backup_dir(tmp_path)
    result = run('restore', {'path': str(tmp_path / 'other'), 'backup_path': str(tmp_path / 'dest' / 'shop' / '20260101T000000000000Z')},
                 tmp_path)
    assert result['failed'] and 'is of instance shop, not other' in result['msg']
