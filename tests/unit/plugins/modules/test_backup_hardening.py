# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""opsguard.anqicms.backup run in-process against a fake database client: option validation before any work,
retention that verifies before it counts, check mode that predicts the real run, stale partial directories.

The fake client answers the sites query and "dumps" with a tiny Python process, so real backups (gzip, sha256,
tar, manifest, rename, retention) are written without a database server.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from unittest import mock

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.opsguard.anqicms.plugins.module_utils import backup_store as bk
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_options import MAX_TIMEOUT
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_partials import OWNER_FILE, owner_record
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_retention import MAX_KEEP, MAX_KEEP_DAYS
from ansible_collections.opsguard.anqicms.plugins.modules import backup as backup_module

DUMP = 'import sys; sys.stdout.write("CREATE TABLE t (a int);\\nINSERT INTO t VALUES (1);\\n-- Dump completed on 2026-01-01\\n")'
SLOW_DUMP = 'import sys, time; sys.stdout.write("CREATE TABLE t (a int);\\n"); sys.stdout.flush(); time.sleep(60)'


def hexed(text: str) -> str:
    return text.encode('utf-8').hex()


class FakeClient(object):
    """Stands in for MysqlClient: answers the sites query, dumps with a small Python process."""

    created = 0
    sites = [['1', '', hexed('shop'), '', '1']]
    dump = DUMP

    def __init__(self, conn: dict, timeout: float = 3600.0, **_kwargs) -> None:
        type(self).created += 1
        self.conn = conn
        self.pass_fds = ()

    def query(self, sql: str, database: str | None = None) -> list:
        return [['10.11.6-MariaDB', '0', '0', '0', '0']] + [list(r) for r in self.sites]

    def dump_cmd(self, database: str) -> list:
        return [sys.executable, '-c', self.dump]

    def close(self) -> None:
        pass


@contextlib.contextmanager
def fake_db(sites: list | None = None, dump: str = DUMP):
    attrs = {'created': 0, 'sites': sites if sites is not None else FakeClient.sites, 'dump': dump}
    fake = type('Fake', (FakeClient,), attrs)
    with mock.patch.object(backup_module, 'MysqlClient', fake):
        yield fake


def make_instance(base: pathlib.Path, config: dict | None = None) -> pathlib.Path:
    inst = base / 'shop'
    (inst / 'public' / 'uploads').mkdir(parents=True)
    (inst / 'public' / 'uploads' / 'a.txt').write_text('upload\n')
    cfg = config if config is not None else {'mysql': {'database': 'shop', 'user': 'shop', 'password': 'pw', 'port': 3306}}
    (inst / 'config.json').write_text(json.dumps(cfg) if not isinstance(cfg, str) else cfg)
    return inst


def old_backup(dest: pathlib.Path, age_days: float, instance: str = 'shop', payload: bytes = b'old dump') -> pathlib.Path:
    """A complete backup of ``instance`` taken ``age_days`` ago, in the layout and manifest the module writes."""
    backup_id = bk.new_backup_id(bk.now_utc() - datetime.timedelta(days=age_days))
    directory = dest / instance / backup_id
    directory.mkdir(parents=True)
    (directory / 'site1-db.sql.gz').write_bytes(payload)
    bk.write_manifest(str(directory), {
        'format': bk.FORMAT, 'id': backup_id, 'instance': instance, 'complete': True,
        'sites': [{'id': 1, 'name': 'shop', 'database': 'shop', 'root': '/srv/shop', 'db_artifact': 'site1-db.sql.gz',
                   'files_artifact': None}],
        'artifacts': [{'name': 'site1-db.sql.gz', 'kind': 'db', 'site': 1, 'size': len(payload),
                       'sha256': hashlib.sha256(payload).hexdigest()}]})
    return directory


def flip_byte(directory: pathlib.Path) -> None:
    target = directory / 'site1-db.sql.gz'
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))


def tree(root: pathlib.Path) -> dict:
    """Every path under ``root`` with its type, size and mtime: what must not change when a task is refused."""
    out = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def args(inst: pathlib.Path, dest: pathlib.Path, **extra) -> dict:
    return dict({'path': str(inst), 'dest': str(dest)}, **extra)


# --- item 11: every option validated before any work ---------------------------------------------------------------

REFUSED = [
    ({'keep': 0}, 'keep must be from 1 to 100000'),
    ({'keep': -1}, 'keep must be from 1 to 100000'),
    ({'keep': 2 ** 64}, 'keep must be from 1 to 100000'),
    ({'keep': True}, 'keep must be an integer'),
    ({'keep_days': -1}, 'keep_days must be from 0 to 36500'),
    ({'keep_days': 'nan'}, 'keep_days must be a finite number'),
    ({'keep_days': 'inf'}, 'keep_days must be a finite number'),
    ({'keep_days': '-inf'}, 'keep_days must be a finite number'),
    ({'keep_days': 1e308}, 'keep_days must be from 0 to 36500'),
    ({'keep': 2, 'keep_days': 'nan'}, 'keep_days must be a finite number'),
    ({'timeout': 0}, 'timeout must be from 1 to 604800'),
    ({'timeout': -5}, 'timeout must be from 1 to 604800'),
    ({'timeout': 2 ** 64}, 'timeout must be from 1 to 604800'),
    ({'login_port': 0}, 'login_port must be from 1 to 65535'),
    ({'login_port': 70000}, 'login_port must be from 1 to 65535'),
    ({'sites': []}, 'sites is an empty list'),
    ({'sites': [0]}, 'sites entry must be from 1'),
    ({'sites': [-1]}, 'sites entry must be from 1'),
    ({'sites': [2 ** 64]}, 'sites entry must be from 1'),
    ({'instance': '..'}, 'is not usable as a directory name'),
    ({'instance': '.hidden'}, 'is not usable as a directory name'),
    ({'instance': 'a/../../etc'}, 'is not usable as a directory name'),
    ({'instance': ''}, 'is not usable as a directory name'),
    ({'instance': 'a\x00b'}, 'contains control characters'),
    ({'instance': 'a\nb'}, 'contains control characters'),
    ({'instance': 'x' * 300}, 'a directory name may have at most 255'),
    ({'dest': ''}, 'dest must be a non-empty path'),
    ({'dest': 'relative/backups'}, 'dest must be an absolute path'),
    ({'dest': '/tmp/a\x00b'}, 'dest contains a NUL byte'),
    ({'dest': '/' + 'd' * 300}, 'longer than a path'),
    ({'path': ''}, 'path must be a non-empty path'),
    ({'path': '/opt/\x00'}, 'path contains a NUL byte'),
    ({'exe': '/opt/shop/anq\x00icms'}, 'exe contains a NUL byte'),
    ({'login_unix_socket': 'mysqld.sock'}, 'login_unix_socket must be an absolute path'),
    ({'login_user': 'root\x00'}, 'login_user contains a NUL byte'),
    ({'login_password': 'se\ncret'}, 'login_password contains a NUL byte or a line break'),
    ({'compare_live': True}, 'compare_live=true needs verify=true'),
]


@pytest.mark.parametrize('check', [False, True], ids=['run', 'check'])
@pytest.mark.parametrize('extra, message', REFUSED, ids=[m + ' ' + repr(e)[:40] for e, m in REFUSED])
def test_bad_options_are_refused_before_any_work(tmp_path, run_main, extra, message, check):
    inst = make_instance(tmp_path)
    dest = tmp_path / 'backups'
    for age in (3, 2, 1):
        old_backup(dest, age)
    before = tree(tmp_path)
    with fake_db() as fake:
        result = run_main(backup_module.main, dict(args(inst, dest), **extra), check=check)
    assert result.get('failed') and message in result['msg'], result
    assert 'nothing was done' in result['msg']
    assert fake.created == 0, 'the database was contacted before the options were validated'
    assert tree(tmp_path) == before
    assert 'se\ncret' not in json.dumps(result)


def test_keep_days_nan_deletes_nothing(tmp_path, run_main):
    """Issue item 11: keep_days=nan used to delete every backup but the newest."""
    inst = make_instance(tmp_path)
    dest = tmp_path / 'backups'
    for age in (3, 2, 1):
        old_backup(dest, age)
    with fake_db():
        result = run_main(backup_module.main, args(inst, dest, keep_days=float('nan')))
    assert result['failed'] and 'keep_days must be a finite number' in result['msg']
    assert len(os.listdir(dest / 'shop')) == 3


@pytest.mark.parametrize('make, message', [
    (lambda t: (t / 'file').write_text('x') and str(t / 'file'), 'is not a directory: give the install directory'),
])
def test_path_that_is_a_file_is_refused(tmp_path, run_main, make, message):
    path = make(tmp_path)
    with fake_db() as fake:
        result = run_main(backup_module.main, {'path': path, 'dest': str(tmp_path / 'backups')})
    assert result['failed'] and message in result['msg'] and fake.created == 0
    assert not (tmp_path / 'backups').exists()


def test_dest_or_instance_dir_that_is_a_file_is_refused(tmp_path, run_main):
    inst = make_instance(tmp_path)
    (tmp_path / 'destfile').write_text('x')
    with fake_db() as fake:
        result = run_main(backup_module.main, args(inst, tmp_path / 'destfile'))
    assert result['failed'] and 'exists and is not a directory' in result['msg'] and fake.created == 0
    (tmp_path / 'backups').mkdir()
    (tmp_path / 'backups' / 'shop').write_text('x')
    with fake_db() as fake:
        result = run_main(backup_module.main, args(inst, tmp_path / 'backups'))
    assert result['failed'] and '(dest/instance) exists and is not a directory' in result['msg'] and fake.created == 0


@pytest.mark.parametrize('kept', ['public/backups', 'data', 'cache/.history/b'])
def test_dest_inside_what_a_site_archives_is_refused(tmp_path, run_main, kept):
    inst = make_instance(tmp_path)
    before = tree(tmp_path)
    with fake_db():
        result = run_main(backup_module.main, args(inst, inst / kept))
    assert result['failed'] and 'choose a dest outside the site roots' in result['msg']
    assert tree(tmp_path) == before


@pytest.mark.parametrize('config, message', [
    ({'mysql': {'database': 'shop', 'port': 'abc'}}, "mysql.port is 'abc', which is no TCP port"),
    ({'mysql': {'database': 'shop', 'port': 70000}}, 'mysql.port is 70000, which is no TCP port'),
    ({'mysql': {'database': 'shop', 'port': True}}, 'mysql.port is True, which is no TCP port'),
    ({'mysql': {'database': 'shop', 'port': [1]}}, 'which is no TCP port'),
    ('{"mysql": {"database": "shop", "port": NaN}}', 'mysql.port is nan, which is no TCP port'),
    ('{"mysql": {"database": "shop", "port": 1e999}}', 'mysql.port is inf, which is no TCP port'),
    ({'mysql': {'database': 'shop'}, 'server': {'port': -1}}, 'server.port is -1, which is no TCP port'),
    ({'mysql': {'database': 5}}, 'database must be a string'),
    ({'mysql': {'database': 'shop', 'user': ['x']}}, 'user must be a string'),
    ({'mysql': {'database': 'sh\x00op'}}, 'database contains a NUL byte'),
    ('[' * 100000, 'is not valid JSON'),
])
def test_config_json_read_back_is_validated(tmp_path, run_main, config, message):
    inst = make_instance(tmp_path, config)
    with fake_db() as fake:
        result = run_main(backup_module.main, args(inst, tmp_path / 'backups'))
    assert result['failed'] and message in result['msg'], result['msg']
    assert fake.created == 0 and not (tmp_path / 'backups').exists()


def test_server_section_of_another_type_is_ignored(tmp_path, run_main):
    inst = make_instance(tmp_path, {'mysql': {'database': 'shop', 'port': '3306'}, 'server': 5})
    with fake_db():
        result = run_main(backup_module.main, args(inst, tmp_path / 'backups'), check=True)
    assert result.get('failed') is not True, result.get('msg')


@pytest.mark.parametrize('root, mysql, message', [
    ('/srv/tw\x00o', '{"database": "two", "use_default": true}', 'which is not a directory'),
    ('relative/two', '{"database": "two", "use_default": true}', 'which is not a directory'),
    ('/nonexistent/two', '{"database": "two", "use_default": true}', 'which is not a directory'),
    ('/tmp', '{"database": "two", "port": "x"}', "websites.mysql port of site 2 is 'x', which is no TCP port"),
    ('/tmp', '{"database": 7}', 'websites.mysql of site 2: database must be a string'),
    ('/tmp', '[1]', 'websites.mysql names no database'),
])
def test_sites_read_back_from_the_database_are_validated(tmp_path, run_main, root, mysql, message):
    inst = make_instance(tmp_path)
    rows = [['1', '', hexed('shop'), '', '1'], ['2', hexed(root), hexed('two'), hexed(mysql), '1']]
    with fake_db(sites=rows):
        result = run_main(backup_module.main, args(inst, tmp_path / 'backups'))
    assert result['failed'] and message in result['msg'], result['msg']
    assert not (tmp_path / 'backups').exists()


def test_directory_named_like_an_id_that_is_no_time_is_reported_not_a_crash(tmp_path, run_main):
    inst = make_instance(tmp_path)
    dest = tmp_path / 'backups'
    good = old_backup(dest, 1)
    bogus = dest / 'shop' / '20261399T999999000000Z'
    good_copy = dest / 'shop' / 'tmpcopy'
    os.rename(str(old_backup(dest, 2)), str(good_copy))
    os.rename(str(good_copy), str(bogus))
    (dest / 'shop' / '20260101T000000000000Z').symlink_to(good)       # a symlink named like an ID: never followed
    (dest / 'shop' / '20260102T000000000000Z').write_text('a file')   # a file named like an ID: ignored
    with fake_db():
        result = run_main(backup_module.main, args(inst, dest, keep=1))
    assert result.get('failed') is not True, result.get('msg')
    assert result['removed'] == [good.name]
    assert [d['id'] for d in result['damaged']] == [bogus.name] and 'no valid time stamp' in result['damaged'][0]['error']
    assert bogus.is_dir() and (dest / 'shop' / '20260101T000000000000Z').is_symlink()


# --- item 10: retention verifies before it counts --------------------------------------------------------------------

def restorable(instance_dir: pathlib.Path) -> list:
    ok = []
    for entry in sorted(os.listdir(instance_dir)):
        try:
            bk.verify_backup(str(instance_dir / entry))
        except bk.BackupError:
            continue
        ok.append(entry)
    return ok


@pytest.mark.parametrize('damaged_index', [0, 1, 2])
def test_retention_never_counts_a_damaged_backup(tmp_path, run_main, damaged_index):
    """Issue item 10: one flipped byte in an old backup; keep=2 must still leave 2 backups that verify."""
    inst = make_instance(tmp_path)
    dest = tmp_path / 'backups'
    olds = [old_backup(dest, age, payload=b'dump of day %d' % age) for age in (3, 2, 1)]   # oldest first
    victim = olds[::-1][damaged_index]                                                  # 0 = newest old one
    flip_byte(victim)
    with fake_db():
        predicted = run_main(backup_module.main, args(inst, dest, keep=2), check=True)
        result = run_main(backup_module.main, args(inst, dest, keep=2))
    assert result['changed'] and result.get('failed') is not True, result.get('msg')
    assert [d['id'] for d in result['damaged']] == [victim.name]
    assert 'has sha256' in result['damaged'][0]['error']
    assert victim.is_dir(), 'retention deleted the damaged backup'
    assert len(restorable(dest / 'shop')) == 2
    assert result['backup_id'] in restorable(dest / 'shop')
    assert predicted['removed'] == result['removed'] and predicted['damaged'] == result['damaged']
    assert result['retention_check']['backups'] >= 2 and result['retention_check']['bytes'] > 0


def test_retention_with_every_old_backup_damaged_keeps_them_all(tmp_path, run_main):
    inst = make_instance(tmp_path)
    dest = tmp_path / 'backups'
    olds = [old_backup(dest, age) for age in (3, 2, 1)]
    for directory in olds:
        flip_byte(directory)
    with fake_db():
        result = run_main(backup_module.main, args(inst, dest, keep=1, keep_days=0))
    assert result['removed'] == [] and sorted(d['id'] for d in result['damaged']) == sorted(d.name for d in olds)
    assert all(d.is_dir() for d in olds)


# --- item 15: check mode predicts exactly what the real run removes ---------------------------------------------------

SCENARIOS = [
    ((3, 2, 1), {'keep': 2}),                   # the new backup counts toward keep
    ((3, 2, 1), {'keep': 1}),
    ((5, 4, 3, 2, 1), {'keep': 3}),
    ((0.5, 2, 3), {'keep_days': 1}),
    ((0.5, 2, 3, 4), {'keep': 2, 'keep_days': 2.5}),
    ((2, 3), {'keep_days': 0}),
    ((1,), {'keep': 5}),
    ((), {'keep': 1}),
    ((3, 2, 1), {}),
]


@pytest.mark.parametrize('damage', [False, True], ids=['intact', 'one-damaged'])
@pytest.mark.parametrize('ages, rules', SCENARIOS)
def test_check_mode_predicts_the_removed_backups_exactly(tmp_path, run_main, ages, rules, damage):
    inst = make_instance(tmp_path)
    dest = tmp_path / 'backups'
    olds = [old_backup(dest, age, payload=b'dump %s' % str(age).encode()) for age in ages]
    if damage and olds:
        flip_byte(olds[len(olds) // 2])
    before = tree(tmp_path)
    with fake_db():
        predicted = run_main(backup_module.main, args(inst, dest, **rules), check=True)
        assert tree(tmp_path) == before
        result = run_main(backup_module.main, args(inst, dest, **rules))
    assert predicted.get('failed') is not True and result.get('failed') is not True, (predicted, result)
    assert predicted['removed'] == result['removed']
    assert predicted['damaged'] == result['damaged']
    if rules.get('keep') == 2 and ages == (3, 2, 1) and not damage:
        assert len(result['removed']) == 2     # the new backup and the newest old one stay


def test_check_mode_changes_nothing(tmp_path, run_main):
    inst = make_instance(tmp_path)
    dest = tmp_path / 'backups'
    for age in (3, 2, 1):
        old_backup(dest, age)
    before = tree(tmp_path)
    with fake_db():
        result = run_main(backup_module.main, args(inst, dest, keep=1), check=True)
    assert len(result['removed']) == 3 and tree(tmp_path) == before


# --- item 14: partial directories of killed backups --------------------------------------------------------------------

RUNNER = '''
import json, sys
from unittest import mock
from ansible.module_utils.testing import patch_module_args
sys.path.insert(0, %(tests)r)
import test_backup_hardening as t
from ansible_collections.opsguard.anqicms.plugins.modules import backup as backup_module
with t.fake_db(dump=t.SLOW_DUMP), patch_module_args(json.loads(sys.argv[1])):
    backup_module.main()
'''


def start_backup(tmp_path, inst, dest) -> subprocess.Popen:
    """A real module process whose dump hangs: it sits in the middle of a backup until it is killed."""
    code = RUNNER % {'tests': os.path.dirname(os.path.abspath(__file__))}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.Popen([sys.executable, '-c', code, json.dumps(args(inst, dest))], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def wait_for_partial(instance_dir: pathlib.Path, proc: subprocess.Popen) -> pathlib.Path:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = sorted(instance_dir.glob('.partial-*')) if instance_dir.is_dir() else []
        if found and (found[0] / 'site1-db.sql.gz').exists():
            return found[0]
        if proc.poll() is not None:
            raise AssertionError('the backup process ended early: %s' % proc.stderr.read().decode())
        time.sleep(0.05)
    raise AssertionError('no partial directory appeared')


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_partial_of_a_killed_backup_is_removed_by_the_next_backup(tmp_path, run_main):
    inst = make_instance(tmp_path)
    dest = tmp_path / 'backups'
    proc = start_backup(tmp_path, inst, dest)
    try:
        partial = wait_for_partial(dest / 'shop', proc)
        owner = json.loads((partial / OWNER_FILE).read_text())
        assert owner['pid'] == proc.pid
    finally:
        kill_group(proc)
    assert partial.is_dir()
    with fake_db():
        predicted = run_main(backup_module.main, args(inst, dest), check=True)
        assert partial.is_dir()
        result = run_main(backup_module.main, args(inst, dest))
    assert predicted['stale_partials_removed'] == [partial.name]
    assert result['stale_partials_removed'] == [partial.name] and result['partials_left'] == []
    assert not partial.exists()
    assert result['changed'] and sorted(os.listdir(dest / 'shop')) == [result['backup_id']]
    assert not (dest / 'shop' / result['backup_id'] / OWNER_FILE).exists()


def test_partial_of_a_running_backup_is_never_removed(tmp_path, run_main):
    inst = make_instance(tmp_path)
    dest = tmp_path / 'backups'
    proc = start_backup(tmp_path, inst, dest)
    try:
        partial = wait_for_partial(dest / 'shop', proc)
        with fake_db():
            result = run_main(backup_module.main, args(inst, dest, keep=1))
        assert result.get('failed') is not True, result.get('msg')
        assert result['stale_partials_removed'] == []
        assert result['partials_left'] == [{'name': partial.name, 'reason': 'a backup is still writing it (it holds its lock)'}]
        assert partial.is_dir() and (partial / 'site1-db.sql.gz').exists() and proc.poll() is None
    finally:
        kill_group(proc)


def test_partials_that_cannot_be_proven_dead_are_left(tmp_path, run_main):
    inst = make_instance(tmp_path)
    dest = tmp_path / 'backups'
    instance_dir = dest / 'shop'
    instance_dir.mkdir(parents=True)
    no_record = instance_dir / '.partial-20260101T000000000000Z'
    no_record.mkdir()
    other_host = instance_dir / '.partial-20260102T000000000000Z'
    other_host.mkdir()
    (other_host / OWNER_FILE).write_text(json.dumps({'pid': 1, 'start': 1, 'boot_id': 'x', 'host': 'elsewhere'}))
    alive = instance_dir / '.partial-20260103T000000000000Z'
    alive.mkdir()
    (alive / OWNER_FILE).write_text(json.dumps(owner_record()))    # this very process, no lock held
    garbage = instance_dir / '.partial-20260104T000000000000Z'
    garbage.mkdir()
    (garbage / OWNER_FILE).write_text('{"pid": "1; rm -rf /"}')
    outside = tmp_path / 'outside'
    outside.mkdir()
    (outside / 'keep.txt').write_text('x')
    (instance_dir / '.partial-20260105T000000000000Z').symlink_to(outside)
    (instance_dir / '.partial-20260106T000000000000Z').write_text('a file')
    with fake_db():
        result = run_main(backup_module.main, args(inst, dest))
    assert result['stale_partials_removed'] == []
    reasons = dict((e['name'], e['reason']) for e in result['partials_left'])
    assert 'no owner record' in reasons[no_record.name]
    assert 'names host elsewhere' in reasons[other_host.name]
    assert 'still runs' in reasons[alive.name]
    assert 'malformed' in reasons[garbage.name]
    assert 'symlink' in reasons['.partial-20260105T000000000000Z'] and 'symlink' in reasons['.partial-20260106T000000000000Z']
    assert all(p.exists() for p in (no_record, other_host, alive, garbage)) and (outside / 'keep.txt').exists()


def test_partial_of_a_dead_pid_or_an_earlier_boot_is_removed(tmp_path, run_main):
    inst = make_instance(tmp_path)
    instance_dir = tmp_path / 'backups' / 'shop'
    instance_dir.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, '-c', 'pass'])
    gone.wait()
    me = owner_record()
    records = {
        '.partial-20260101T000000000000Z': dict(me, pid=gone.pid, start=None),       # PID no longer exists
        '.partial-20260102T000000000000Z': dict(me, start=me['start'] - 1),          # PID reused by a newer process
        '.partial-20260103T000000000000Z': dict(me, boot_id='0' * 36),               # written before the last reboot
    }
    for name, record in records.items():
        (instance_dir / name).mkdir()
        (instance_dir / name / OWNER_FILE).write_text(json.dumps(record))
        (instance_dir / name / 'site1-db.sql.gz').write_bytes(b'half')
    with fake_db():
        result = run_main(backup_module.main, args(inst, tmp_path / 'backups'))
    assert result['stale_partials_removed'] == sorted(records)
    assert sorted(os.listdir(instance_dir)) == [result['backup_id']]


# --- property-based: any value of an option's declared type is refused with a message or leads to a result -----------

PROPERTY = settings(max_examples=50, deadline=None, derandomize=True)


@contextlib.contextmanager
def scratch():
    """A fresh instance and a dest with three old backups (the middle one damaged), removed afterwards."""
    import shutil
    import tempfile
    base = pathlib.Path(tempfile.mkdtemp(prefix='bk-prop-'))
    try:
        inst = make_instance(base)
        dest = base / 'backups'
        olds = [old_backup(dest, age, payload=b'dump %d' % age) for age in (3, 2, 1)]
        flip_byte(olds[1])
        yield base, inst, dest
    finally:
        shutil.rmtree(base, ignore_errors=True)


def outcome(run_main, extra: dict, check: bool) -> tuple:
    """Run the module with ``extra`` options; check the universal properties; return (result, dest, refused)."""
    with scratch() as (base, inst, dest):
        before = tree(base)
        with fake_db() as fake:
            result = run_main(backup_module.main, dict(args(inst, dest), **extra), check=check)
        assert isinstance(result.get('msg', ''), str)
        if result.get('failed'):
            assert result['msg'].strip(), 'a refusal without a message'
            if 'nothing was done' in result['msg']:
                assert fake.created == 0 and tree(base) == before, 'side effect before validation ended'
            else:
                assert tree(base) == before, 'a failed run changed the backup tree'
            return result, None, True
        assert 'sites' in result and isinstance(result['removed'], list)
        if check:
            assert tree(base) == before
        return result, restorable(dest / 'shop') if (dest / 'shop').is_dir() else [], False


@PROPERTY
@given(keep=st.one_of(st.none(), st.integers(min_value=-5, max_value=8), st.integers()))
def test_property_keep(run_main, keep):
    result, ok, refused = outcome(run_main, {'keep': keep}, check=False)
    if refused:
        assert keep is not None and not 1 <= keep <= MAX_KEEP and 'keep must be' in result['msg']
    else:
        # 2 intact old backups + the new one; the damaged one is never counted, never deleted.
        assert len(ok) >= min(keep or 3, 3) and result['backup_id'] in ok
        if keep is not None:
            assert len(result['damaged']) == 1 and 'has sha256' in result['damaged'][0]['error']


@PROPERTY
@given(keep_days=st.one_of(st.none(), st.floats(), st.floats(min_value=-2, max_value=5), st.integers(min_value=-2 ** 70, max_value=2 ** 70)))
def test_property_keep_days(run_main, keep_days):
    result, ok, refused = outcome(run_main, {'keep_days': keep_days}, check=False)
    if refused:
        assert 'keep_days must be' in result['msg']
        assert not (0 <= keep_days <= MAX_KEEP_DAYS)
    else:
        assert keep_days is None or 0 <= keep_days <= MAX_KEEP_DAYS
        assert result['backup_id'] in ok and len(ok) >= 1


@PROPERTY
@given(keep=st.integers(min_value=-1, max_value=6), keep_days=st.floats(min_value=-1, max_value=4, allow_nan=False))
def test_property_check_mode_predicts_retention(run_main, keep, keep_days):
    with scratch() as (_base, inst, dest):
        with fake_db():
            predicted = run_main(backup_module.main, args(inst, dest, keep=keep, keep_days=keep_days), check=True)
            result = run_main(backup_module.main, args(inst, dest, keep=keep, keep_days=keep_days))
        assert bool(predicted.get('failed')) == bool(result.get('failed'))
        if not result.get('failed'):
            assert predicted['removed'] == result['removed'] and predicted['damaged'] == result['damaged']
            assert len(restorable(dest / 'shop')) >= min(keep, 3)


@PROPERTY
@given(timeout=st.integers())
def test_property_timeout(run_main, timeout):
    result, _ok, refused = outcome(run_main, {'timeout': timeout}, check=False)
    assert refused == (not 1 <= timeout <= MAX_TIMEOUT)
    if refused:
        assert 'timeout must be' in result['msg']


@PROPERTY
@given(sites=st.one_of(st.none(), st.lists(st.integers(), max_size=4)))
def test_property_sites(run_main, sites):
    result, _ok, refused = outcome(run_main, {'sites': sites}, check=True)
    if not refused:
        assert [s['id'] for s in result['sites']] == [1]


@PROPERTY
@given(instance=st.one_of(st.none(), st.text(max_size=300), st.sampled_from(['.', '..', '../x', 'a/b', '.partial-x', 'x' * 256, 'é' * 128])))
def test_property_instance(run_main, instance):
    result, _ok, refused = outcome(run_main, {'instance': instance}, check=False)
    if not refused:
        assert os.path.dirname(result['backup_path']).endswith('/' + (instance or 'shop'))


@PROPERTY
@given(option=st.sampled_from(['path', 'dest', 'exe', 'login_unix_socket']),
       value=st.one_of(st.text(max_size=80), st.text(max_size=80).map(lambda t: '/' + t),
                       st.sampled_from(['', '/', '/..', '/../../etc', '/tmp/\x00', '/' + 'a' * 5000, '~', '$HOME'])))
def test_property_paths(run_main, option, value):
    outcome(run_main, {option: value}, check=True)


@PROPERTY
@given(option=st.sampled_from(['login_user', 'login_password', 'login_host']), value=st.text(max_size=100))
def test_property_login_strings(run_main, option, value):
    result, _ok, _refused = outcome(run_main, {option: value}, check=True)
    if option == 'login_password' and value:
        assert result['invocation']['module_args']['login_password'] == 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'


@PROPERTY
@given(port=st.one_of(st.none(), st.integers()), cold=st.booleans(), verify=st.booleans(), compare_live=st.booleans())
def test_property_port_and_switches(run_main, port, cold, verify, compare_live):
    result, _ok, refused = outcome(run_main, {'login_port': port, 'cold': cold, 'verify': verify, 'compare_live': compare_live},
                                   check=True)
    assert refused == ((port is not None and not 1 <= port <= 65535) or (compare_live and not verify))
