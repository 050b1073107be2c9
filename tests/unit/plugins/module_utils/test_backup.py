# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import os
import pathlib
import sys
import tarfile

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup import (
    FORMAT,
    MANIFEST,
    BackupError,
    archive_files,
    apply_retention,
    connection,
    discover_sites,
    dump_database,
    extract_files,
    find_backup,
    list_backups,
    load_dump,
    parse_site_mysql,
    read_instance_config,
    running_pids,
    select_expired,
    verify_backup,
    write_manifest,
)

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)
TRAILER = '-- Dump completed on 2026-03-10 12:00:00\n'


def python_cmd(code: str) -> list:
    return [sys.executable, '-c', code]


def make_backup(instance_dir: pathlib.Path, backup_id: str, instance: str = 'shop', payload: bytes = b'data') -> pathlib.Path:
    """A complete backup directory with one artifact, written with the module's own helpers."""
    directory = instance_dir / backup_id
    directory.mkdir(parents=True)
    (directory / 'site1-db.sql.gz').write_bytes(payload)
    manifest = {'format': FORMAT, 'id': backup_id, 'instance': instance, 'complete': True,
                'sites': [{'id': 1, 'database': 'db', 'db_artifact': 'site1-db.sql.gz', 'files_artifact': None}],
                'artifacts': [{'name': 'site1-db.sql.gz', 'size': len(payload), 'sha256': hashlib.sha256(payload).hexdigest()}]}
    write_manifest(str(directory), manifest)
    return directory


# --- dumps --------------------------------------------------------------------------------------------------

def test_dump_is_compressed_hashed_and_has_its_trailer(tmp_path):
    dest = tmp_path / 'd.sql.gz'
    body = 'INSERT INTO t VALUES (1);\n' * 50000
    info = dump_database(python_cmd('import sys; sys.stdout.write(%r * 50000 + %r)' % ('INSERT INTO t VALUES (1);\n', TRAILER)),
                         str(dest))
    raw = gzip.decompress(dest.read_bytes()).decode()
    assert raw == body + TRAILER
    assert info['size'] == dest.stat().st_size and info['raw_size'] == len(raw)
    assert info['sha256'] == hashlib.sha256(dest.read_bytes()).hexdigest()
    assert oct(dest.stat().st_mode & 0o777) == '0o600'


def test_dump_without_trailer_is_refused(tmp_path):
    with pytest.raises(BackupError, match='no completion trailer'):
        dump_database(python_cmd('print("INSERT INTO t VALUES (1);")'), str(tmp_path / 'd.sql.gz'))


def test_dump_exit_status_is_checked_even_with_a_trailer(tmp_path):
    code = 'import sys; sys.stdout.write(%r); sys.stderr.write("Lost connection"); sys.exit(2)' % TRAILER
    with pytest.raises(BackupError, match=r'exited with status 2: Lost connection'):
        dump_database(python_cmd(code), str(tmp_path / 'd.sql.gz'))


def test_dump_never_overwrites_an_existing_file(tmp_path):
    dest = tmp_path / 'd.sql.gz'
    dest.write_text('keep me')
    with pytest.raises(FileExistsError):
        dump_database(python_cmd('print(1)'), str(dest))
    assert dest.read_text() == 'keep me'


def test_load_streams_the_dump_into_the_client_and_checks_its_status(tmp_path):
    src = tmp_path / 'd.sql.gz'
    src.write_bytes(gzip.compress(('SELECT 1;\n' * 1000 + TRAILER).encode()))
    out = tmp_path / 'received.sql'
    copy = 'import sys, shutil; shutil.copyfileobj(sys.stdin.buffer, open(%r, "wb"))' % str(out)
    assert load_dump(python_cmd(copy), str(src)) == len('SELECT 1;\n' * 1000 + TRAILER)
    assert out.read_text().endswith(TRAILER)
    with pytest.raises(BackupError, match='exit status 3'):
        load_dump(python_cmd('import sys; sys.stdin.read(); sys.exit(3)'), str(src))


def test_load_refuses_a_truncated_gzip_stream(tmp_path):
    src = tmp_path / 'd.sql.gz'
    src.write_bytes(gzip.compress(('SELECT 1;\n' * 1000 + TRAILER).encode())[:-12])
    with pytest.raises(BackupError, match='truncated gzip'):
        load_dump(python_cmd('import sys; sys.stdin.read()'), str(src))


# --- files ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('tar', [None, ''], ids=['gnu-tar', 'python-tarfile'])
def test_archive_keeps_only_the_kept_items_and_round_trips(tmp_path, tar):
    root = tmp_path / 'site'
    for rel, content in (('config.json', '{}'), ('public/uploads/a.bin', 'A'), ('template/default/index.html', 'T'),
                         ('data/cert/k.pem', 'K'), ('cache/.history/h', 'H'), ('cache/page.html', 'regenerable'),
                         ('anqicms', 'binary'), ('running.log', 'log')):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    os.symlink('uploads', root / 'public' / 'link')
    info = archive_files(str(root), str(tmp_path / 'f.tar.gz'), tar=tar)
    assert info['sha256'] == hashlib.sha256((tmp_path / 'f.tar.gz').read_bytes()).hexdigest()
    assert info['items'] == ['config.json', 'template', 'public', 'data', 'cache/.history']
    out = tmp_path / 'out'
    out.mkdir()
    assert extract_files(str(tmp_path / 'f.tar.gz'), str(out)) == info['items']
    assert (out / 'cache' / '.history' / 'h').read_text() == 'H'
    assert not (out / 'cache' / 'page.html').exists() and not (out / 'anqicms').exists()
    assert os.readlink(out / 'public' / 'link') == 'uploads'


@pytest.mark.parametrize('name, linkname, kind', [
    ('../evil', '', tarfile.REGTYPE),
    ('/etc/passwd', '', tarfile.REGTYPE),
    ('locales/x', '', tarfile.REGTYPE),
    ('public/dev', '', tarfile.CHRTYPE),
    ('public/escape', '/etc', tarfile.SYMTYPE),
])
def test_extract_refuses_members_outside_the_kept_items(tmp_path, name, linkname, kind):
    archive = tmp_path / 'bad.tar.gz'
    with tarfile.open(archive, 'w:gz') as tar:
        member = tarfile.TarInfo(name)
        member.type = kind
        member.linkname = linkname
        tar.addfile(member, None if kind != tarfile.REGTYPE else __import__('io').BytesIO(b''))
    out = tmp_path / 'out'
    out.mkdir()
    with pytest.raises(BackupError):
        extract_files(str(archive), str(out))
    assert not pathlib.Path('/etc/passwd').is_symlink()


# --- manifest and verification ---------------------------------------------------------------------------------

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


def test_latest_skips_partial_and_damaged_backups(tmp_path):
    inst = tmp_path / 'shop'
    make_backup(inst, '20260101T000000000000Z')
    (make_backup(inst, '20260103T000000000000Z') / MANIFEST).write_text('x')
    (inst / '.partial-20260104T000000000000Z').mkdir()
    assert find_backup(str(tmp_path), 'shop', 'latest').endswith('20260101T000000000000Z')
    listing = list_backups(str(inst))
    assert [b['id'] for b in listing['bad']] == ['20260103T000000000000Z'] and len(listing['partial']) == 1
    with pytest.raises(BackupError, match='neither'):
        find_backup(str(tmp_path), 'shop', '../etc')
    with pytest.raises(BackupError, match='no complete backup'):
        find_backup(str(tmp_path), 'other', 'latest')


# --- retention -------------------------------------------------------------------------------------------------

def entries(*ages_days: float) -> list:
    return [{'id': str(i), 'time': NOW - datetime.timedelta(days=a)} for i, a in enumerate(ages_days)]


@pytest.mark.parametrize('ages, keep, keep_days, expired', [
    ((0, 1, 2, 3), 2, None, ['2', '3']),
    ((0, 1, 2, 3), None, 1.5, ['2', '3']),
    ((0, 1, 2, 3), 1, 2.5, ['3']),             # either rule keeps a backup
    ((0, 1, 2, 3), None, None, []),
    ((10, 20), None, 1, ['1']),                 # all too old: the newest good one still stays
    ((10,), 1, 0, []),
])
def test_select_expired(ages, keep, keep_days, expired):
    assert [e['id'] for e in select_expired(entries(*ages), keep, keep_days, NOW)] == expired


def test_keep_zero_is_refused():
    with pytest.raises(BackupError, match='at least 1'):
        select_expired(entries(0, 1), 0, None, NOW)


def test_retention_deletes_only_good_backups_of_the_instance(tmp_path):
    inst = tmp_path / 'shop'
    ids = ['20260101T000000000000Z', '20260102T000000000000Z', '20260103T000000000000Z']
    for backup_id in ids:
        make_backup(inst, backup_id)
    make_backup(inst, '20251201T000000000000Z', instance='other')
    (make_backup(inst, '20251202T000000000000Z') / MANIFEST).write_text('damaged')
    (inst / '.partial-20251203T000000000000Z').mkdir()
    (inst / 'notes').mkdir()
    assert apply_retention(str(inst), 'shop', 1, None, NOW, check_mode=True) == ids[:2][::-1]
    assert len(os.listdir(inst)) == 7
    assert apply_retention(str(inst), 'shop', 1, None, NOW) == ids[:2][::-1]
    assert sorted(os.listdir(inst)) == sorted(['.partial-20251203T000000000000Z', '20251201T000000000000Z',
                                               '20251202T000000000000Z', ids[2], 'notes'])


# --- configuration and sites -----------------------------------------------------------------------------------

def test_instance_config_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(BackupError, match='config.json does not exist'):
        read_instance_config(str(tmp_path))
    (tmp_path / 'config.json').write_text('{"mysql": {}}')
    with pytest.raises(BackupError, match='not installed yet'):
        read_instance_config(str(tmp_path))
    (tmp_path / 'config.json').write_text('{"mysql": {"database": "a", "user": "u", "password": "p", "port": 3307}}')
    assert read_instance_config(str(tmp_path))['port'] == 3307


def test_sites_from_websites_rows():
    default = {'database': 'main', 'user': 'u', 'password': 'p', 'host': '127.0.0.1', 'port': 3306}

    def row(site_id, root, name, mysql):
        return [str(site_id), root.encode().hex(), name.encode().hex(), mysql.encode().hex(), '1']
    rows = [row(1, '/ignored', 'one', ''), row(2, '/srv/two', 'two', json.dumps({'database': 'db2', 'use_default': True})),
            row(3, '/srv/three', 'three', json.dumps({'database': 'db3', 'user': 'x', 'password': 'y', 'host': 'h', 'port': 1}))]
    sites = discover_sites(rows, default, '/opt/app')
    expected = [(1, '/opt/app', 'main'), (2, '/srv/two', 'db2'), (3, '/srv/three', 'db3')]
    assert [(s['id'], s['root'], s['database']) for s in sites] == expected
    assert sites[1]['conn']['user'] == 'u' and sites[2]['conn']['user'] == 'x' and sites[2]['conn']['port'] == 1
    with pytest.raises(BackupError, match='site 4: websites.mysql is not valid JSON'):
        parse_site_mysql('{', default, 4)


def test_login_user_never_inherits_the_configured_password():
    conn = {'user': 'app', 'password': 'secret', 'host': 'db', 'port': 3306}
    assert connection(conn, {'user': 'root', 'socket': '/run/mysqld/mysqld.sock'}) == {
        'user': 'root', 'password': None, 'host': None, 'port': None, 'socket': '/run/mysqld/mysqld.sock'}
    assert connection(conn, {'host': '127.0.0.1'})['password'] == 'secret'


def test_running_is_established_from_the_resolved_exe():
    assert os.getpid() in running_pids(os.path.realpath(sys.executable))
    assert running_pids('/nonexistent/anqicms') == []
