# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""restore on untrusted manifests, absurd options, a damaged newest backup and wrong credentials (issue 11, items 5, 12, 13).

The module runs in-process (``run_main``) against a real backup directory and a fake ``mariadb`` client on PATH
that logs what it is asked and answers as told (refuse the login, fail the load, or succeed). Every refusal is
checked against a snapshot of the live instance directory: it must be unchanged, with no staging left behind.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import (
    FORMAT,
    BackupError,
    ManifestError,
    find_backup,
    read_manifest,
    validate_manifest,
    verify_backup,
    write_manifest,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_streams import archive_files
from ansible_collections.opsguard.anqicms.plugins.modules import restore

BACKUP_ID = '20260101T000000000000Z'
OLDER_ID = '20251231T000000000000Z'
PASSWORD = 'Pw-0xSECRET-restore'

FAKE_MARIADB = r'''#!%s
import json, os, sys
args = sys.argv[1:]
with open(args[0].split('=', 1)[1]) as handle:
    options = handle.read()
sql = sys.stdin.read()
log = os.environ.get('OPSG_FAKE_LOG')
if log:
    with open(log, 'a') as handle:
        handle.write(json.dumps({'args': args[1:], 'sql': sql[:4000]}) + '\n')
mode = os.environ.get('OPSG_FAKE_MODE', 'deny')
if mode == 'deny':
    sys.stderr.write("ERROR 1045 (28000): Access denied for user 'app'@'localhost' (using password: YES)\n")
    sys.exit(1)
if mode == 'fail_load' and '--batch' not in args:
    sys.stderr.write('ERROR 1064 (42000) at line 2: You have an error in your SQL syntax\n')
    sys.exit(1)
if 'information_schema.SCHEMATA WHERE SCHEMA_NAME =' in sql:
    print('1')
'''


@pytest.fixture(scope='module')
def fake_bin(tmp_path_factory):
    directory = tmp_path_factory.mktemp('fakebin')
    for name in ('mariadb', 'mariadb-dump'):
        script = directory / name
        script.write_text(FAKE_MARIADB % sys.executable)
        script.chmod(0o755)
    return str(directory)


@contextlib.contextmanager
def fake_client(fake_bin: str, mode: str = 'deny', log: str | None = None):
    """PATH and mode of the fake client for one module run (no function-scoped fixture: usable under hypothesis)."""
    saved = {k: os.environ.get(k) for k in ('PATH', 'OPSG_FAKE_MODE', 'OPSG_FAKE_LOG')}
    os.environ['PATH'] = fake_bin + os.pathsep + (saved['PATH'] or '/usr/bin:/bin')
    os.environ['OPSG_FAKE_MODE'] = mode
    if log:
        os.environ['OPSG_FAKE_LOG'] = log
    else:
        os.environ.pop('OPSG_FAKE_LOG', None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def write_tree(root: str, files: dict) -> None:
    for rel, content in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as handle:
            handle.write(content)


CONFIG = json.dumps({'mysql': {'database': 'shop', 'user': 'app', 'password': 'app-pw', 'host': '127.0.0.1', 'port': 3306},
                     'server': {'port': 8001}})


def artifact(directory: str, name: str, kind: str) -> dict:
    with open(os.path.join(directory, name), 'rb') as handle:
        data = handle.read()
    return {'name': name, 'kind': kind, 'site': 1, 'size': len(data), 'sha256': hashlib.sha256(data).hexdigest()}


def good_manifest(directory: str, backup_id: str = BACKUP_ID, items: list | None = None) -> dict:
    return {
        'format': FORMAT, 'id': backup_id, 'instance': 'shop', 'complete': True, 'db_server': {'version': '10.11.19-MariaDB'},
        'sites': [{'id': 1, 'name': 'shop', 'root': '/srv/shop', 'database': 'shop', 'db_artifact': 'site1-db.sql.gz',
                   'files_artifact': 'site1-files.tar.gz', 'tables': {'t': {'rows': 1, 'checksum': '123'}}}],
        'artifacts': [artifact(directory, 'site1-db.sql.gz', 'db'),
                      dict(artifact(directory, 'site1-files.tar.gz', 'files'), items=items or ['config.json', 'public'])],
    }


def make_backup(base: str, backup_id: str = BACKUP_ID, manifest=None) -> str:
    """A real backup of instance 'shop' under <base>/dest, and the live instance at <base>/live/shop."""
    live = os.path.join(base, 'live', 'shop')
    if not os.path.isdir(live):
        write_tree(live, {'config.json': CONFIG, 'public/a.txt': 'live upload', 'anqicms': 'binary'})
    source = os.path.join(base, 'src-' + backup_id)
    write_tree(source, {'config.json': CONFIG, 'public/a.txt': 'backed-up upload'})
    directory = os.path.join(base, 'dest', 'shop', backup_id)
    os.makedirs(directory)
    with gzip.open(os.path.join(directory, 'site1-db.sql.gz'), 'wb') as handle:
        handle.write(b'CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n-- Dump completed on 2026-01-01\n')
    info = archive_files(source, os.path.join(directory, 'site1-files.tar.gz'))
    data = good_manifest(directory, backup_id, info['items'])
    if manifest is not None:
        data = manifest(data) if callable(manifest) else manifest
    if isinstance(data, (bytes, str)):
        with open(os.path.join(directory, 'manifest.json'), 'wb') as handle:
            handle.write(data if isinstance(data, bytes) else data.encode('utf-8'))
    else:
        write_manifest(directory, data)
    return directory


def snapshot(root: str) -> dict:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(dirpath, name), root) + '/'] = None
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, 'rb') as handle:
                out[os.path.relpath(path, root)] = handle.read()
    return out


def args_for(base: str, **extra) -> dict:
    """Module arguments for the instance of ``base``; an extra set to None leaves that option out."""
    args = dict({'path': os.path.join(base, 'live', 'shop'), 'dest': os.path.join(base, 'dest'), 'login_user': 'root',
                 'login_password': PASSWORD}, **extra)
    return dict((k, v) for k, v in args.items() if v is not None)


def assert_untouched(result: dict, before: dict, base: str) -> None:
    assert result.get('failed'), result
    assert isinstance(result.get('msg'), str) and result['msg']
    assert snapshot(os.path.join(base, 'live')) == before, 'a refused restore changed the live instance'
    assert PASSWORD not in json.dumps(result), 'the password leaked into the result'


# ---- item 13: the journal holds only what happened ------------------------------------------------------------


def test_wrong_credentials_report_no_rollback_of_a_database_never_created(tmp_path, run_main, fake_bin):
    base = str(tmp_path)
    make_backup(base)
    before = snapshot(os.path.join(base, 'live'))
    log = str(tmp_path / 'client.log')
    with fake_client(fake_bin, 'deny', log):
        result = run_main(restore.main, args_for(base))
    assert_untouched(result, before, base)
    assert 'Access denied' in result['msg'] and 'creating staging database shop_opsg_new_' in result['msg']
    assert 'ROLLBACK INCOMPLETE' not in result['msg'] and 'could not undo' not in result['msg'], result['msg']
    assert result['rollback_problems'] == []
    assert not any('creation of database' in line for line in result['rolled_back']), result['rolled_back']
    calls = [json.loads(line) for line in open(log)]
    assert len(calls) == 1 and calls[0]['sql'].startswith('CREATE DATABASE'), 'nothing may be tried after the refused CREATE'


def test_a_failed_load_drops_exactly_the_staging_database_it_created(tmp_path, run_main, fake_bin):
    base = str(tmp_path)
    make_backup(base)
    before = snapshot(os.path.join(base, 'live'))
    log = str(tmp_path / 'client.log')
    with fake_client(fake_bin, 'fail_load', log):
        result = run_main(restore.main, args_for(base))
    assert_untouched(result, before, base)
    assert 'every step was undone' in result['msg'] and result['rollback_problems'] == []
    sqls = [json.loads(line)['sql'] for line in open(log)]
    created = [s for s in sqls if s.startswith('CREATE DATABASE')]
    dropped = [s for s in sqls if s.startswith('DROP DATABASE')]
    assert len(created) == 1 and len(dropped) == 1 and created[0].split()[2] == dropped[0].split()[2].rstrip(';')
    assert any('undone: creation of database shop_opsg_new_' in line for line in result['rolled_back'])


class FakeClient(object):
    """Just enough of MysqlClient for swap_tables and the undo of its steps; ``fail`` names the statement that fails."""

    def __init__(self, fail: str, live_exists: bool = True) -> None:
        self.fail = fail
        self.databases = {'shop': ['a'] if live_exists else None, 'stage': ['a']}
        self.sql: list = []

    def schema_info(self, names: list) -> dict:
        return dict((n, {'exists': self.databases.get(n) is not None, 'tables': dict((t, 'BASE TABLE') for t in self.databases.get(n) or []),
                         'objects': {}}) for n in names)

    def run_sql(self, sql: str, database=None) -> str:
        from ansible_collections.opsguard.anqicms.plugins.module_utils.mysql_client import MysqlError

        self.sql.append(sql)
        if sql.startswith(self.fail):
            raise MysqlError('refused: ' + sql)
        if sql.startswith('CREATE DATABASE'):
            self.databases[sql.split('`')[1]] = []
        return ''


@pytest.mark.parametrize('fail, live_exists, journalled', [
    ('CREATE DATABASE `shop_old`', True, []),
    ('RENAME TABLE', True, ['create_db']),
    ('CREATE DATABASE `shop`', False, []),
    ('RENAME TABLE', False, ['create_db']),
])
def test_swap_tables_journals_only_the_statements_that_succeeded(fail, live_exists, journalled):
    from ansible_collections.opsguard.anqicms.plugins.module_utils.restore_workflow import Journal, swap_tables
    from ansible_collections.opsguard.anqicms.plugins.module_utils.mysql_client import MysqlError

    client = FakeClient(fail, live_exists)
    journal = Journal()
    with pytest.raises(MysqlError):
        swap_tables(client, 'k', 'shop', 'stage', 'shop_old', journal)
    assert [s['kind'] for s in journal.steps] == journalled
    for step in journal.steps:
        assert client.databases.get(step['database']) is not None, 'a journalled database must exist'


# ---- item 5: the manifest is untrusted input ------------------------------------------------------------------


@pytest.mark.parametrize('mutate, field', [
    (lambda m: m.update(sites=['x']), 'sites[0] must be an object'),
    (lambda m: m.update(sites=[]), 'sites must be a non-empty list'),
    (lambda m: m.update(sites={'id': 1}), 'sites must be a non-empty list'),
    (lambda m: m['sites'][0].update(id='1'), 'sites[0].id must be a positive integer'),
    (lambda m: m['sites'][0].update(id=True), 'sites[0].id must be a positive integer'),
    (lambda m: m['sites'][0].update(id=0), 'sites[0].id must be a positive integer'),
    (lambda m: m['sites'][0].update(id=2 ** 64), 'sites[0].id must be a positive integer'),
    (lambda m: m['sites'].append(dict(m['sites'][0])), 'sites[1].id must be unique'),
    (lambda m: m['sites'][0].update(root='/srv/../etc'), 'sites[0].root must be an absolute, normalised'),
    (lambda m: m['sites'][0].update(root='relative/dir'), 'sites[0].root must be an absolute'),
    (lambda m: m['sites'][0].update(root='/'), 'sites[0].root must be an absolute'),
    (lambda m: m['sites'][0].update(root='/srv/a\0b'), 'sites[0].root must be an absolute'),
    (lambda m: m['sites'][0].update(root=['/srv']), 'sites[0].root must be'),
    (lambda m: m['sites'][0].update(database=''), 'sites[0].database must be a database name'),
    (lambda m: m['sites'][0].update(database='x' * 65), 'sites[0].database must be a database name'),
    (lambda m: m['sites'][0].update(database='a/b'), 'sites[0].database must be a database name'),
    (lambda m: m['sites'][0].update(database=None), 'sites[0].database must be a database name'),
    (lambda m: m['sites'][0].update(db_artifact='../../etc/passwd'), 'sites[0].db_artifact must be null or the name of a db'),
    (lambda m: m['sites'][0].update(db_artifact='site1-files.tar.gz'), 'sites[0].db_artifact must be null or the name of a db'),
    (lambda m: m['sites'][0].update(files_artifact=7), 'sites[0].files_artifact'),
    (lambda m: m['sites'][0].update(db_shared_with=1), 'sites[0].db_shared_with must be null or the id of a site listed before'),
    (lambda m: m['sites'][0].update(tables=[1]), 'sites[0].tables must be an object or null'),
    (lambda m: m['sites'][0].update(tables={'t': {'rows': -1}}), "sites[0].tables['t'].rows must be an integer >= 0"),
    (lambda m: m['sites'][0].update(tables={'t': {'rows': 1.5}}), "sites[0].tables['t'].rows must be an integer >= 0"),
    (lambda m: m['sites'][0].update(tables={'t': {'rows': 1, 'checksum': 5}}), "sites[0].tables['t'].checksum"),
    (lambda m: m['artifacts'][0].update(size=-1), 'artifacts[0].size must be an integer from 0'),
    (lambda m: m['artifacts'][0].update(size=1e308), 'artifacts[0].size must be an integer from 0'),
    (lambda m: m['artifacts'][0].update(size=2 ** 64), 'artifacts[0].size must be an integer from 0'),
    (lambda m: m['artifacts'][0].update(size='12'), 'artifacts[0].size must be an integer from 0'),
    (lambda m: m['artifacts'][0].update(sha256='ABC'), 'artifacts[0].sha256 must be 64 lower-case hex digits'),
    (lambda m: m['artifacts'][0].update(sha256=None), 'artifacts[0].sha256 must be 64 lower-case hex digits'),
    (lambda m: m['artifacts'][0].update(name='../x'), 'artifacts[0].name must be a plain file name'),
    (lambda m: m['artifacts'][0].update(name='manifest.json'), 'artifacts[0].name must be a plain file name'),
    (lambda m: m['artifacts'][0].update(name='.hidden'), 'artifacts[0].name must be a plain file name'),
    (lambda m: m['artifacts'].append(dict(m['artifacts'][0])), 'artifacts[2].name must be unique'),
    (lambda m: m['artifacts'][1].update(items=['../etc']), 'artifacts[1].items must be a list of distinct kept items'),
    (lambda m: m['artifacts'][1].update(items='public'), 'artifacts[1].items must be a list of distinct kept items'),
    (lambda m: m['artifacts'][1].update(kind='exe'), 'artifacts[1].kind must be'),
    (lambda m: m.update(artifacts={}), 'artifacts must be a list'),
    (lambda m: m.update(instance='../other'), 'instance must be a non-empty directory name'),
    (lambda m: m.update(instance=5), 'instance must be a non-empty directory name'),
    (lambda m: m.update(complete=False), 'complete must be true'),
    (lambda m: m.pop('complete'), 'complete must be true'),
    (lambda m: m.update(db_server='10.11'), 'db_server must be an object or null'),
    (lambda m: m.update(db_server={'version': 10.11}), 'db_server.version must be a string or null'),
])
@pytest.mark.parametrize('check', [True, False])
def test_a_manifest_of_the_wrong_shape_is_refused_naming_backup_and_field(tmp_path, run_main, fake_bin, mutate, field, check):
    base = str(tmp_path)

    def bad(manifest: dict) -> dict:
        manifest = copy.deepcopy(manifest)
        mutate(manifest)
        return manifest

    directory = make_backup(base, manifest=bad)
    before = snapshot(os.path.join(base, 'live'))
    with fake_client(fake_bin, 'succeed'):
        result = run_main(restore.main, args_for(base, dest=None, backup_path=directory), check=check)
    assert_untouched(result, before, base)
    assert directory in result['msg'] and 'manifest field ' + field in result['msg'], result['msg']
    assert 'exception' not in result


@pytest.mark.parametrize('content, expected', [
    (b'NaN', 'not valid JSON'),
    (b'{"format": "opsguard.anqicms.backup/1", "id": Infinity}', 'not valid JSON'),
    (b'[' * 100000, 'not valid JSON'),
    (b'\xff\xfe', 'not valid JSON'),
    (b'"just a string"', 'is not a manifest of format'),
    (b'{}', 'is not a manifest of format'),
])
def test_a_manifest_that_is_not_json_or_not_an_object_is_refused(tmp_path, run_main, content, expected):
    base = str(tmp_path)
    directory = make_backup(base, manifest=content)
    before = snapshot(os.path.join(base, 'live'))
    result = run_main(restore.main, args_for(base, dest=None, backup_path=directory), check=True)
    assert_untouched(result, before, base)
    assert expected in result['msg'] and 'exception' not in result


@pytest.mark.parametrize('kind', ['fifo', 'symlink', 'huge'])
def test_a_manifest_that_is_no_regular_file_is_refused_without_blocking(tmp_path, kind):
    base = str(tmp_path)
    directory = make_backup(base)
    path = os.path.join(directory, 'manifest.json')
    os.unlink(path)
    if kind == 'fifo':
        os.mkfifo(path)
    elif kind == 'symlink':
        os.symlink('/etc/hostname', path)
    else:
        with open(path, 'wb') as handle:
            handle.truncate(17 * 1024 * 1024)
    with pytest.raises(BackupError, match='regular file|symlink|more than a manifest can'):
        read_manifest(directory)


def test_a_site_without_a_files_artifact_restores_its_database_only(tmp_path, run_main, fake_bin):
    base = str(tmp_path)

    def no_files(manifest: dict) -> dict:
        manifest['sites'][0]['files_artifact'] = None
        return manifest

    make_backup(base, manifest=no_files)
    with fake_client(fake_bin, 'succeed'):
        result = run_main(restore.main, args_for(base), check=True)
    assert not result.get('failed'), result['msg']
    assert result['plan'][0]['root'] is None and result['plan'][0]['database'] == 'shop'


# ---- item 12: "latest" is the newest backup, never an older one in its place -----------------------------------


@pytest.mark.parametrize('damage', ['no_manifest', 'bad_json', 'incomplete', 'other_instance', 'file_not_dir', 'flipped_byte'])
def test_latest_fails_and_names_a_damaged_newest_backup(tmp_path, run_main, damage):
    base = str(tmp_path)
    make_backup(base, OLDER_ID)
    newest = os.path.join(base, 'dest', 'shop', BACKUP_ID)
    if damage == 'file_not_dir':
        with open(newest, 'w') as handle:
            handle.write('x')
    else:
        make_backup(base, BACKUP_ID)
        manifest_path = os.path.join(newest, 'manifest.json')
        if damage == 'no_manifest':
            os.unlink(manifest_path)
        elif damage == 'bad_json':
            with open(manifest_path, 'w') as handle:
                handle.write('{"format": ')
        elif damage in ('incomplete', 'other_instance'):
            data = json.load(open(manifest_path))
            data.update({'complete': False} if damage == 'incomplete' else {'instance': 'other'})
            os.unlink(manifest_path)
            write_manifest(newest, data)
        else:
            art = os.path.join(newest, 'site1-db.sql.gz')
            raw = bytearray(open(art, 'rb').read())
            raw[-5] ^= 0xFF
            open(art, 'wb').write(bytes(raw))
    before = snapshot(os.path.join(base, 'live'))
    for check in (True, False):
        result = run_main(restore.main, args_for(base), check=check)
        assert_untouched(result, before, base)
        assert newest in result['msg'], result['msg']
        assert OLDER_ID not in result['msg'] and result.get('backup_id') != OLDER_ID
    # The older backup is still reachable by its ID.
    result = run_main(restore.main, args_for(base, backup_id=OLDER_ID), check=True)
    assert not result.get('failed'), result['msg']
    assert result['backup_id'] == OLDER_ID


def test_latest_picks_the_newest_intact_backup(tmp_path):
    base = str(tmp_path)
    make_backup(base, OLDER_ID)
    make_backup(base, BACKUP_ID)
    os.makedirs(os.path.join(base, 'dest', 'shop', '.partial-20270101T000000000000Z'))
    assert find_backup(os.path.join(base, 'dest'), 'shop', 'latest').endswith(BACKUP_ID)


def test_an_id_shaped_name_that_is_no_time_makes_latest_fail(tmp_path):
    base = str(tmp_path)
    make_backup(base, OLDER_ID)
    os.makedirs(os.path.join(base, 'dest', 'shop', '20261399T000000Z'))
    with pytest.raises(BackupError, match='20261399T000000Z is no valid time stamp'):
        find_backup(os.path.join(base, 'dest'), 'shop', 'latest')


# ---- options: refused before anything is touched -----------------------------------------------------------------


@pytest.mark.parametrize('extra, expected', [
    ({'path': ''}, 'path='),
    ({'path': 'relative/shop'}, 'must be an absolute path'),
    ({'path': '/'}, 'path=/ is not an AnQiCMS install directory'),
    ({'path': '/srv/a\0b'}, 'must be an absolute path'),
    ({'path': '/' + 'a' * 5000}, 'must be an absolute path'),
    ({'exe': '/bin/a\0b'}, 'exe='),
    ({'dest': '/srv/\0'}, 'dest='),
    ({'instance': '../shop'}, 'instance='),
    ({'instance': ''}, 'instance='),
    ({'instance': '.hidden'}, 'instance='),
    ({'backup_id': '../../etc'}, 'backup_id='),
    ({'backup_id': BACKUP_ID + '\n'}, 'backup_id='),
    ({'backup_id': ''}, 'backup_id='),
    ({'sites': []}, 'sites=[] names no site'),
    ({'sites': [0]}, 'site IDs are positive integers'),
    ({'sites': [-1, 1]}, 'site IDs are positive integers'),
    ({'sites': [2 ** 64]}, 'site IDs are positive integers'),
    ({'timeout': 0}, 'timeout=0 must be from 1'),
    ({'timeout': -1}, 'timeout=-1 must be from 1'),
    ({'timeout': 2 ** 64}, 'must be from 1 to 604800'),
    ({'timeout': 1e308}, 'must be from 1 to 604800'),
    ({'timeout': 'nan'}, 'timeout'),
    ({'timeout': float('inf')}, 'timeout=inf must be a finite integer'),
    ({'timeout': '-inf'}, "timeout=-inf must be a finite integer"),
    ({'login_port': 'Infinity'}, "login_port=Infinity must be a finite integer"),
    ({'sites': [1, float('inf')]}, 'sites[1]=inf must be a finite integer'),
    ({'sites': ['1e400']}, 'sites[0]=1e400 must be a finite integer'),
    ({'login_port': 0}, 'login_port=0 must be a TCP port'),
    ({'login_port': 70000}, 'login_port=70000 must be a TCP port'),
    ({'login_port': -1}, 'login_port=-1 must be a TCP port'),
    ({'login_user': 'root\nhost=evil'}, 'login_user='),
    ({'login_password': 'a\0b' + PASSWORD}, 'login_password=(hidden) must not contain'),
    ({'login_unix_socket': '/run/a\0b'}, 'login_unix_socket='),
    ({'backup_path': '/srv/b'}, 'mutually exclusive'),
])
def test_bad_options_are_refused_before_anything_is_touched(tmp_path, run_main, fake_bin, extra, expected):
    base = str(tmp_path)
    make_backup(base)
    before = snapshot(os.path.join(base, 'live'))
    log = str(tmp_path / 'client.log')
    with fake_client(fake_bin, 'succeed', log):
        result = run_main(restore.main, args_for(base, **extra))
    assert_untouched(result, before, base)
    assert expected in result['msg'], result['msg']
    assert not os.path.exists(log), 'the database client was called before validation ended'


def test_the_password_is_masked_everywhere(tmp_path, run_main, fake_bin):
    base = str(tmp_path)
    make_backup(base)
    with fake_client(fake_bin, 'deny'):
        result = run_main(restore.main, args_for(base))
    assert result['failed'] and PASSWORD not in json.dumps(result)
    assert result['invocation']['module_args']['login_password'] == 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'


# ---- property-based: any value of the declared type is refused with a message or leads to a result -------------

TEXT = st.one_of(st.text(max_size=40), st.sampled_from(['', '/', '..', '/etc/../..', '\0', 'latest', BACKUP_ID, 'x' * 5000]))
INTS = st.one_of(st.integers(), st.sampled_from([0, -1, 2 ** 63, 2 ** 64, 10 ** 30, 65535, 65536, float('inf'), 'inf', float('nan'), 1e308]))
OPTION_VALUES = {
    'path': TEXT, 'instance': TEXT, 'dest': TEXT, 'backup_id': TEXT, 'backup_path': TEXT, 'exe': TEXT,
    'sites': st.lists(INTS, max_size=4), 'databases': st.booleans(), 'files': st.booleans(), 'force': st.booleans(),
    'keep_previous': st.booleans(), 'check_tables': st.booleans(), 'timeout': INTS, 'login_user': TEXT,
    'login_password': TEXT, 'login_host': TEXT, 'login_port': INTS, 'login_unix_socket': TEXT,
}


@pytest.fixture(scope='module')
def prop_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('restore-prop'))


def fresh_base(prop_dir: str, manifest=None) -> str:
    base = tempfile.mkdtemp(dir=prop_dir)
    make_backup(base, manifest=manifest)
    return base


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(option=st.sampled_from(sorted(OPTION_VALUES)), data=st.data(), check=st.booleans())
def test_any_option_value_is_refused_with_a_message_or_leads_to_a_result(run_main, fake_bin, prop_dir, option, data, check):
    value = data.draw(OPTION_VALUES[option], label=option)
    base = fresh_base(prop_dir)
    try:
        args = args_for(base)
        args[option] = value
        if option == 'backup_path':
            args.pop('dest')
        before = snapshot(os.path.join(base, 'live'))
        with fake_client(fake_bin, 'deny'):
            result = run_main(restore.main, args, check=check)
        assert isinstance(result.get('msg', ''), str)
        if result.get('failed'):
            assert result['msg'], 'a refusal without a message'
            assert 'exception' not in result, result.get('exception')
            assert snapshot(os.path.join(base, 'live')) == before, 'a failed run left the live instance changed'
            assert not [n for n in os.listdir(os.path.join(base, 'live', 'shop')) if n.startswith('.opsguard-')]
        else:
            assert 'plan' in result
        if option != 'login_password' or len(str(value)) > 3:
            assert PASSWORD not in json.dumps(result)
    finally:
        shutil.rmtree(base, ignore_errors=True)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                    max_leaves=20)
FIELDS = [('format',), ('id',), ('instance',), ('complete',), ('db_server',), ('sites',), ('artifacts',), ('sites', 0),
          ('sites', 0, 'id'), ('sites', 0, 'root'), ('sites', 0, 'database'), ('sites', 0, 'db_artifact'),
          ('sites', 0, 'files_artifact'), ('sites', 0, 'db_shared_with'), ('sites', 0, 'tables'), ('sites', 0, 'name'),
          ('artifacts', 0), ('artifacts', 0, 'name'), ('artifacts', 0, 'size'), ('artifacts', 0, 'sha256'),
          ('artifacts', 1, 'items'), ('artifacts', 1, 'kind'), ('artifacts', 1, 'site')]


def set_field(manifest: dict, field: tuple, value) -> dict:
    manifest = copy.deepcopy(manifest)
    target = manifest
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    return manifest


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=JSON, check=st.booleans())
def test_any_manifest_field_value_is_refused_or_restorable(run_main, fake_bin, prop_dir, field, value, check):
    base = fresh_base(prop_dir, manifest=lambda m: set_field(m, field, value))
    try:
        before = snapshot(os.path.join(base, 'live'))
        with fake_client(fake_bin, 'deny'):
            result = run_main(restore.main, args_for(base), check=check)
        if result.get('failed'):
            assert result['msg'] and 'exception' not in result, result
            assert snapshot(os.path.join(base, 'live')) == before
        elif field == ('sites', 0, 'db_artifact') and value is None:
            # a site backed up without its database: only its files are restored, no login is needed
            assert result['plan'] and 'exception' not in result
        else:
            assert check and result['plan'], 'only check mode can succeed against a client that refuses every login'
    finally:
        shutil.rmtree(base, ignore_errors=True)


@settings(max_examples=100, deadline=None)
@given(data=JSON)
def test_validate_manifest_accepts_or_names_a_field_for_any_json(data):
    try:
        validate_manifest(data)
    except ManifestError as exc:
        assert str(exc).startswith('manifest field ')
    else:  # pragma: no cover - arbitrary JSON is practically never a valid manifest
        assert isinstance(data, dict)


def test_a_valid_manifest_passes_verification(tmp_path):
    directory = make_backup(str(tmp_path))
    assert verify_backup(directory)['id'] == BACKUP_ID
