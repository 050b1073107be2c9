# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import hashlib
import json
import pathlib

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import (
    FORMAT,
    MANIFEST,
    BackupError,
    find_backup,
    list_backups,
    verify_backup,
    write_manifest,
)


def make_backup(instance_dir: pathlib.Path, backup_id: str, instance: str = 'shop', payload: bytes = b'data') -> pathlib.Path:
    """A complete backup directory with one artifact, written with the module's own helpers."""
    directory = instance_dir / backup_id
    directory.mkdir(parents=True)
    (directory / 'site1-db.sql.gz').write_bytes(payload)
    manifest = {'format': FORMAT, 'id': backup_id, 'instance': instance, 'complete': True,
                'sites': [{'id': 1, 'database': 'db', 'root': '/srv/shop', 'db_artifact': 'site1-db.sql.gz', 'files_artifact': None}],
                'artifacts': [{'name': 'site1-db.sql.gz', 'kind': 'db', 'site': 1, 'size': len(payload),
                               'sha256': hashlib.sha256(payload).hexdigest()}]}
    write_manifest(str(directory), manifest)
    return directory


def test_verify_accepts_an_intact_backup(tmp_path):
    directory = make_backup(tmp_path / 'shop', '20260101T000000000000Z')
    assert verify_backup(str(directory))['instance'] == 'shop'


@pytest.mark.parametrize('damage, message', [
    (lambda d: (d / 'site1-db.sql.gz').write_bytes(b'dbta'), 'has sha256'),
    (lambda d: (d / 'site1-db.sql.gz').write_bytes(b'data!'), 'has 5 bytes'),
    (lambda d: (d / 'site1-db.sql.gz').unlink(), 'is missing'),
    (lambda d: (d / MANIFEST).write_text('{"format"'), 'not valid JSON'),
    (lambda d: (d / MANIFEST).unlink(), 'not a complete backup'),
    (lambda d: (d / MANIFEST).write_text(json.dumps({'format': 'other'})), 'not a manifest'),
])
def test_verify_names_what_is_wrong(tmp_path, damage, message):
    directory = make_backup(tmp_path / 'shop', '20260101T000000000000Z')
    damage(directory)
    with pytest.raises(BackupError, match=message):
        verify_backup(str(directory))


def test_verify_refuses_a_manifest_moved_to_another_id(tmp_path):
    directory = make_backup(tmp_path / 'shop', '20260101T000000000000Z')
    moved = directory.parent / '20260202T000000000000Z'
    directory.rename(moved)
    with pytest.raises(BackupError, match='names backup 20260101T000000000000Z'):
        verify_backup(str(moved))


def test_latest_skips_partials_but_never_a_damaged_newest_backup(tmp_path):
    inst = tmp_path / 'shop'
    make_backup(inst, '20260101T000000000000Z')
    (inst / '.partial-20260104T000000000000Z').mkdir()
    assert find_backup(str(tmp_path), 'shop', 'latest').endswith('20260101T000000000000Z')
    (make_backup(inst, '20260103T000000000000Z') / MANIFEST).write_text('x')
    with pytest.raises(BackupError, match='the newest backup of instance shop, .*20260103T000000000000Z.*is damaged'):
        find_backup(str(tmp_path), 'shop', 'latest')
    assert find_backup(str(tmp_path), 'shop', '20260101T000000000000Z').endswith('20260101T000000000000Z')
    listing = list_backups(str(inst))
    assert [b['id'] for b in listing['bad']] == ['20260103T000000000000Z'] and len(listing['partial']) == 1
    with pytest.raises(BackupError, match='neither'):
        find_backup(str(tmp_path), 'shop', '../etc')
    with pytest.raises(BackupError, match='no complete backup'):
        find_backup(str(tmp_path), 'other', 'latest')


def test_list_backups_reports_an_id_that_is_no_time_and_reads_no_symlink(tmp_path):
    inst = tmp_path / 'shop'
    make_backup(inst, '20260101T000000000000Z')
    (inst / '20261399T999999000000Z').mkdir()
    (inst / '20260102T000000000000Z').symlink_to(inst / '20260101T000000000000Z')
    listing = list_backups(str(inst))
    assert [g['id'] for g in listing['good']] == ['20260101T000000000000Z']
    assert [b['id'] for b in listing['bad']] == ['20261399T999999000000Z'] and 'no valid time stamp' in listing['bad'][0]['error']
