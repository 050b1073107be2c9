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
    claim_partial,
    clean_stale_partials,
    config_port,
    connection,
    discover_sites,
    dump_database,
    extract_files,
    find_backup,
    list_backups,
    load_dump,
    name_problems,
    parse_site_mysql,
    path_problems,
    plan_retention,
    release_partial,
    retention_problems,
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
                'sites': [{'id': 1, 'database': 'db', 'root': '/srv/shop', 'db_artifact': 'site1-db.sql.gz', 'files_artifact': None}],
                'artifacts': [{'name': 'site1-db.sql.gz', 'kind': 'db', 'site': 1, 'size': len(payload),
                               'sha256': hashlib.sha256(payload).hexdigest()}]}
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
    with pytest.raises(BackupError, match=r'keep must be from 1 to 100000 \(the newest good backup is never deleted\); got 0'):
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
    assert apply_retention(str(inst), 'shop', 1, None, NOW, check_mode=True)['removed'] == ids[:2][::-1]
    assert len(os.listdir(inst)) == 7
    done = apply_retention(str(inst), 'shop', 1, None, NOW)
    assert done['removed'] == ids[:2][::-1]
    assert [d['id'] for d in done['damaged']] == ['20251202T000000000000Z']
    assert sorted(os.listdir(inst)) == sorted(['.partial-20251203T000000000000Z', '20251201T000000000000Z',
                                               '20251202T000000000000Z', ids[2], 'notes'])


def test_plan_retention_verifies_before_it_counts():
    good = entries(0, 1, 2, 3, 4)
    broken = {'1': 'flipped byte', '3': 'missing artifact'}
    plan = plan_retention(good, 2, None, NOW, check=lambda e: broken.get(e['id']))
    assert [e['id'] for e in plan['kept']] == ['0', '2']
    assert [e['id'] for e in plan['damaged']] == ['1', '3'] and plan['damaged'][0]['error'] == 'flipped byte'
    assert [e['id'] for e in plan['expired']] == ['4']


def test_plan_retention_checks_only_what_it_must():
    checked = []
    good = [dict(e, trusted=(e['id'] == '0')) for e in entries(0, 0.5, 0.7, 3, 4)]
    plan = plan_retention(good, 2, 1, NOW, check=lambda e: checked.append(e['id']))
    # '0' is trusted (just written), '0.5'-aged '1' fills keep=2, '2' is young (kept unchecked), '3' and '4' expire.
    assert checked == ['1', '3', '4'] and [e['id'] for e in plan['expired']] == ['3', '4']
    assert [e['id'] for e in plan['kept']] == ['0', '1', '2']


@pytest.mark.parametrize('keep, keep_days, message', [
    (0, None, 'keep must be from 1'), (True, None, 'keep must be an integer'), (1.5, None, 'keep must be an integer'),
    (None, float('nan'), 'finite'), (None, float('inf'), 'finite'), (None, -0.5, 'from 0 to 36500'),
    (None, 1e308, 'from 0 to 36500'), (None, '3', 'must be a number'),
])
def test_retention_options_are_checked(keep, keep_days, message):
    assert message in ' '.join(retention_problems(keep, keep_days))
    with pytest.raises(BackupError, match=message):
        plan_retention(entries(0, 1), keep, keep_days, NOW)


def test_list_backups_reports_an_id_that_is_no_time_and_reads_no_symlink(tmp_path):
    inst = tmp_path / 'shop'
    make_backup(inst, '20260101T000000000000Z')
    (inst / '20261399T999999000000Z').mkdir()
    (inst / '20260102T000000000000Z').symlink_to(inst / '20260101T000000000000Z')
    listing = list_backups(str(inst))
    assert [g['id'] for g in listing['good']] == ['20260101T000000000000Z']
    assert [b['id'] for b in listing['bad']] == ['20261399T999999000000Z'] and 'no valid time stamp' in listing['bad'][0]['error']


def test_claimed_partial_is_locked_and_recorded_until_released(tmp_path):
    inst = tmp_path / 'shop'
    inst.mkdir()
    fd = claim_partial(str(inst / '.partial-20260101T000000000000Z'))
    try:
        record = json.loads((inst / '.partial-20260101T000000000000Z' / '.owner').read_text())
        assert record['pid'] == os.getpid() and record['start'] > 0
        assert oct((inst / '.partial-20260101T000000000000Z').stat().st_mode & 0o777) == '0o700'
        assert clean_stale_partials(str(inst))['left'][0]['reason'] == 'a backup is still writing it (it holds its lock)'
        release_partial(fd)
        assert not (inst / '.partial-20260101T000000000000Z' / '.owner').exists()
    finally:
        os.close(fd)
    # Lock gone, no record (released before the manifest is written): never proven dead, left alone.
    assert 'no owner record' in clean_stale_partials(str(inst))['left'][0]['reason']
    assert clean_stale_partials(str(tmp_path / 'missing')) == {'removed': [], 'left': []}


@pytest.mark.parametrize('value, message', [
    ('', 'non-empty'), ('rel', 'absolute'), ('/a\x00b', 'NUL'), ('/\udcff\ud800', 'encoded'), ('/' + 'a' * 256, 'longer'),
    ('/' + 'a/' * 2100, 'longer'), (5, 'non-empty path'),
])
def test_path_problems(value, message):
    assert message in ' '.join(path_problems('dest', value))
    assert path_problems('dest', '/var/backups/anqicms') == [] and path_problems('dest', None) == []


@pytest.mark.parametrize('value, ok', [('shop', True), ('shop-2.b_c', True), ('é' * 127, True), ('é' * 128, False), ('', False),
                                       ('.', False), ('..', False), ('a/b', False), ('.x', False), ('a\tb', False),
                                       ('\ud800', False), (None, False)])
def test_name_problems(value, ok):
    assert (name_problems('instance', value) == []) == ok


@pytest.mark.parametrize('value, expected', [(None, 3306), ('', 3306), (0, 3306), (3307, 3307), ('3307', 3307), (3307.0, 3307),
                                             ('x', None), (-1, None), (65536, None), (True, None), (float('nan'), None),
                                             (float('inf'), None), ([1], None), ({'a': 1}, None)])
def test_config_port(value, expected):
    if expected is None:
        with pytest.raises(BackupError, match='which is no TCP port'):
            config_port(value, 'config.json mysql.port', 3306)
    else:
        assert config_port(value, 'config.json mysql.port', 3306) == expected


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
