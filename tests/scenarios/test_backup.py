"""Backup and restore of a multi-site AnQiCMS stand-in against a private MariaDB.

The modules run for real (python -m of the module with an args file, as Ansible runs them);
the data is written through the stand-in's own write API (archives, uploads) on site 1 and
site 2, each with its own database and root. Nothing here touches the machine's own MariaDB.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tests' / 'standin'))

import standin  # noqa: E402  pylint: disable=wrong-import-position
from harness import Instance, free_port  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.opsguard.anqicms.tests.utils.mariadb import PrivateMariaDB  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.opsguard.anqicms.tests.utils.module_harness import run_module_process  # noqa: E402  pylint: disable=wrong-import-position

PYTHON = str(REPO / '.venv' / 'bin' / 'python') if (REPO / '.venv' / 'bin' / 'python').exists() else sys.executable
COLLECTIONS = str(REPO / '.collections')
# Characters that break naive quoting in a defaults file or a shell.
APP_PASSWORD = 'p#a;s"s\'w\\d ' + secrets.token_hex(4)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='needs root (tmpfs mounts, private mariadbd)')


def run_module(name: str, args: dict, check: bool = False, tmp: pathlib.Path | None = None) -> dict:
    """Run opsguard.anqicms.<name> the way Ansible does (JSON args file), return its result."""
    return run_module_process(name, args, check=check, tmp=tmp, python=PYTHON)


def tree_hashes(root: pathlib.Path, items=('config.json', 'template', 'public', 'data', 'cache/.history')) -> dict:
    """sha256 of every file (and target of every symlink) under the kept items of a site root."""
    out = {}
    for item in items:
        base = root / item
        if base.is_file():
            out[item] = hashlib.sha256(base.read_bytes()).hexdigest()
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                path = pathlib.Path(dirpath) / name
                rel = str(path.relative_to(root))
                out[rel] = ('link:' + os.readlink(path)) if path.is_symlink() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def db_state(db: PrivateMariaDB, database: str) -> dict:
    """Row count and CHECKSUM TABLE of every table of a database."""
    tables = [r[0] for r in db.rows('SHOW TABLES FROM `%s`;' % database)]
    state = {}
    for table in tables:
        count = db.rows('SELECT COUNT(*) FROM `%s`.`%s`;' % (database, table))[0][0]
        checksum = db.rows('CHECKSUM TABLE `%s`.`%s` EXTENDED;' % (database, table))[0][1]
        state[table] = (count, checksum)
    return state


def multipart(field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = 'b' + secrets.token_hex(8)
    body = (('--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\n'
             'Content-Type: application/octet-stream\r\n\r\n' % (boundary, field, filename)).encode()
            + content + ('\r\n--%s--\r\n' % boundary).encode())
    return body, 'multipart/form-data; boundary=' + boundary


@pytest.fixture(scope='module')
def mariadb(tmp_path_factory):
    db = PrivateMariaDB(str(tmp_path_factory.mktemp('backup-mariadb'))).start()
    esc = APP_PASSWORD.replace('\\', '\\\\').replace("'", "\\'")
    db.sql("CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY '%s'; GRANT ALL PRIVILEGES ON *.* TO 'app'@'127.0.0.1';" % esc)
    yield db
    db.stop(remove=True)


@pytest.fixture(scope='module')
def release():
    return standin.build()


class Shop(object):
    """A two-site stand-in instance with content and uploads on both sites."""

    def __init__(self, tmp: pathlib.Path, db: PrivateMariaDB, release_zip: pathlib.Path) -> None:
        self.tmp = tmp
        self.db = db
        self.path = tmp / 'shop'
        self.root2 = tmp / 'site2root'
        self.dest = tmp / 'backups'
        token = secrets.token_hex(3)
        self.db1, self.db2 = 'shop_%s' % token, 'shop2_%s' % token
        standin.deploy(standin.local_run, standin.local_put, str(self.path), release_zip)
        self.inst = Instance(self.path)
        self.proc = None
        self.start()
        standin.web_install(self.inst.base_url, db_host='127.0.0.1', db_port=db.port, database=self.db1, user='app',
                            password=APP_PASSWORD, admin_password='secret-admin', site_url='http://site1.test')
        self.root2.mkdir()
        site2 = json.dumps({'database': self.db2, 'user': 'app', 'password': APP_PASSWORD, 'host': '127.0.0.1',
                            'port': db.port, 'use_default': False})
        esc = site2.replace('\\', '\\\\').replace("'", "\\'")
        db.sql("INSERT INTO `%s`.websites (id, root_path, name, mysql, status, base_url) VALUES "
               "(2, '%s', 'second', '%s', 1, 'http://site2.test');" % (self.db1, self.root2, esc))
        self.stop()
        self.start()
        for host, n in (('site1.test', 5), ('site2.test', 7)):
            for i in range(n):
                self.post_archive(host, 'title %d on %s' % (i, host), 'content ' * 50 + secrets.token_hex(16))
            for i in range(3):
                self.upload(host, 'upload-%d.bin' % i, secrets.token_bytes(20000 + i))
        for root in (self.path, self.root2):
            (root / 'cache' / '.history').mkdir(parents=True, exist_ok=True)
            (root / 'cache' / '.history' / 'h1.txt').write_text('history of ' + str(root))
            (root / 'cache' / 'regenerable.html').write_text('page cache')
            (root / 'data' / 'cert').mkdir(parents=True, exist_ok=True)
            (root / 'data' / 'cert' / 'site.key').write_bytes(secrets.token_bytes(64))
        os.symlink('uploads', self.path / 'public' / 'uploads-link')

    def start(self) -> None:
        self.proc = self.inst.start(port=free_port(), hooks=False)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def post_archive(self, host: str, title: str, content: str) -> int:
        import urllib.parse  # pylint: disable=import-outside-toplevel
        form = urllib.parse.urlencode({'title': title, 'content': content}).encode()
        status, _headers, body = self.inst.post('/api/archive', form, headers={'Host': host})
        assert status == 200, body
        return json.loads(body)['data']['id']

    def upload(self, host: str, name: str, content: bytes) -> None:
        body, ctype = multipart('file', name, content)
        status, _headers, reply = self.inst.post('/api/attachment', body, content_type=ctype, headers={'Host': host})
        assert status == 200, reply

    def state(self) -> dict:
        return {'db1': db_state(self.db, self.db1), 'db2': db_state(self.db, self.db2),
                'files1': tree_hashes(self.path), 'files2': tree_hashes(self.root2)}

    def backup(self, check: bool = False, **extra) -> dict:
        args = {'path': str(self.path), 'dest': str(self.dest)}
        args.update(extra)
        return run_module('backup', args, check=check, tmp=self.tmp)

    def restore(self, check: bool = False, **extra) -> dict:
        args = {'path': str(self.path), 'dest': str(self.dest), 'login_user': 'root', 'login_unix_socket': self.db.socket}
        args.update(extra)
        return run_module('restore', args, check=check, tmp=self.tmp)

    def leftovers(self) -> list:
        """Staging/previous databases and directories left by a restore."""
        dbs = [r[0] for r in self.db.rows("SHOW DATABASES LIKE '%\\_opsg\\_%';")]
        dirs = [str(p) for root in (self.path, self.root2) for p in root.glob('.opsguard-*')]
        return dbs + dirs

    def close(self) -> None:
        self.inst.cleanup()


@pytest.fixture
def shop(tmp_path, mariadb, release):
    s = Shop(tmp_path, mariadb, release)
    yield s
    s.close()


def test_backup_destroy_restore_gives_identical_data(shop: Shop):
    result = shop.backup(verify=True)
    assert result.get('failed') is not True, result
    assert result['changed'] and [s['id'] for s in result['sites']] == [1, 2]
    backup_dir = pathlib.Path(result['backup_path'])
    manifest = json.loads((backup_dir / 'manifest.json').read_text())
    assert manifest['complete'] is True and manifest['instance'] == 'shop'
    assert manifest['app']['version'] == '3.5.8' and manifest['app']['running'] == [shop.proc.pid]
    expected = {'site1-db.sql.gz', 'site1-files.tar.gz', 'site2-db.sql.gz', 'site2-files.tar.gz'}
    assert {a['name'] for a in manifest['artifacts']} == expected
    assert manifest['sites'][1]['database'] == shop.db2 and manifest['sites'][1]['tables']['archives']['rows'] == 7
    assert APP_PASSWORD not in (backup_dir / 'manifest.json').read_text()
    assert not list(backup_dir.parent.glob('.partial-*'))
    shop.stop()
    before = shop.state()
    assert 'cache/regenerable.html' not in before['files1']

    shop.db.sql('DROP DATABASE `%s`; DROP DATABASE `%s`;' % (shop.db1, shop.db2))
    shutil.rmtree(shop.path / 'public' / 'uploads')
    shutil.rmtree(shop.root2 / 'public' / 'uploads')
    (shop.path / 'config.json').write_text('{}')

    restored = shop.restore()
    assert restored.get('failed') is not True, restored.get('msg')
    assert restored['changed'] and restored['backup_id'] == result['backup_id']
    assert shop.state() == before
    # The app works on the restored data: site 2's archive pages come from its restored database.
    shop.start()
    status, _headers, body = shop.inst.get('/', headers={'Host': 'site2.test'})
    assert status == 200 and b'title 6 on site2.test' in body
    # Previous (destroyed) files were kept aside, the staging ones are gone.
    assert not list(shop.path.glob('.opsguard-new-*'))
    assert (pathlib.Path(restored['files'][0]['previous']) / 'config.json').read_text() == '{}'


def test_restore_over_live_data_keeps_previous_state_and_can_drop_it(shop: Shop):
    result = shop.backup()
    shop.stop()
    before = shop.state()
    shop.db.sql('DELETE FROM `%s`.archives WHERE id > 2;' % shop.db2)
    (shop.root2 / 'public' / 'robots.txt').write_text('changed after the backup')
    restored = shop.restore(keep_previous=False)
    assert restored.get('failed') is not True, restored.get('msg')
    assert shop.state() == before
    assert shop.leftovers() == [], 'keep_previous=false leaves no previous databases or directories'
    assert result['backup_id'] == restored['backup_id']


def test_failure_after_the_swap_rolls_everything_back(shop: Shop):
    """Site 2's public/ cannot be moved (immutable): the databases and site 1's files already swapped are put back."""
    shop.backup()
    shop.stop()
    shop.db.sql('DELETE FROM `%s`.archives WHERE id > 3; DELETE FROM `%s`.archives;' % (shop.db1, shop.db2))
    (shop.path / 'public' / 'robots.txt').write_text('changed after the backup')
    before = shop.state()
    subprocess.run(['chattr', '+i', str(shop.root2 / 'public')], check=True)
    try:
        failed = shop.restore()
    finally:
        subprocess.run(['chattr', '-i', str(shop.root2 / 'public')], check=True)
    assert failed.get('failed') is True
    assert 'Operation not permitted' in failed['msg'] and 'every step was undone' in failed['msg'], failed['msg']
    assert any('table swap into %s' % shop.db1 in line for line in failed['rolled_back'])
    assert failed['rollback_problems'] == []
    assert shop.state() == before
    assert shop.leftovers() == []


def test_two_sites_on_one_database_are_dumped_and_restored_once(shop: Shop):
    root3 = shop.tmp / 'site3root'
    (root3 / 'public').mkdir(parents=True)
    (root3 / 'public' / 'robots.txt').write_text('site 3')
    site3 = json.dumps({'database': shop.db1, 'use_default': True})
    shop.db.sql("INSERT INTO `%s`.websites (id, root_path, name, mysql, status, base_url) VALUES "
                "(3, '%s', 'third', '%s', 1, 'http://site3.test');" % (shop.db1, root3, site3))
    result = shop.backup(verify=True)
    assert result.get('failed') is not True, result.get('msg')
    assert [a['name'] for a in result['artifacts'] if a['kind'] == 'db'] == ['site1-db.sql.gz', 'site2-db.sql.gz']
    shop.stop()
    before = shop.state()
    shop.db.sql('DELETE FROM `%s`.archives;' % shop.db1)
    (root3 / 'public' / 'robots.txt').write_text('changed')
    restored = shop.restore(keep_previous=False)
    assert restored.get('failed') is not True, restored.get('msg')
    assert [d['database'] for d in restored['databases']] == [shop.db1, shop.db2]
    assert shop.state() == before and (root3 / 'public' / 'robots.txt').read_text() == 'site 3'


def test_flipped_byte_is_refused_and_live_data_untouched(shop: Shop):
    result = shop.backup()
    shop.stop()
    artifact = pathlib.Path(result['backup_path']) / 'site2-files.tar.gz'
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artifact.write_bytes(bytes(data))
    shop.db.sql('DELETE FROM `%s`.archives WHERE id = 1;' % shop.db1)
    before = shop.state()
    for check in (True, False):
        refused = shop.restore(check=check)
        assert refused.get('failed') is True
        assert 'site2-files.tar.gz has sha256' in refused['msg'] and 'failed verification' in refused['msg']
        assert shop.state() == before
        assert shop.leftovers() == []


def test_restore_refuses_while_the_instance_runs(shop: Shop):
    shop.backup()
    before = shop.state()
    refused = shop.restore()
    assert refused.get('failed') is True
    assert 'runs (PIDs [%d]' % shop.proc.pid in refused['msg'] and 'nothing was changed' in refused['msg']
    assert shop.state() == before and shop.leftovers() == []


def test_check_mode_reports_the_plan_and_changes_nothing(shop: Shop):
    planned_backup = shop.backup(check=True)
    assert planned_backup['changed'] is False and not shop.dest.exists()
    shop.backup()
    shop.stop()
    shop.db.sql('DELETE FROM `%s`.archives;' % shop.db2)
    before = shop.state()
    plan = shop.restore(check=True)
    assert plan.get('failed') is not True, plan
    assert plan['changed'] is True
    assert [(p['site'], p['database']) for p in plan['plan']] == [(1, shop.db1), (2, shop.db2)]
    assert 'public' in plan['plan'][1]['items']
    assert shop.state() == before and shop.leftovers() == []


def test_cold_backup_refuses_a_running_instance(shop: Shop):
    refused = shop.backup(cold=True)
    assert refused.get('failed') is True and 'cold backup' in refused['msg'] and str(shop.proc.pid) in refused['msg']
    assert not shop.dest.exists() or not any(shop.dest.rglob('manifest.json'))
    shop.stop()
    cold = shop.backup(cold=True, verify=True, compare_live=True)
    assert cold.get('failed') is not True, cold
    assert json.loads((pathlib.Path(cold['backup_path']) / 'manifest.json').read_text())['mode'] == 'cold'


def test_full_disk_fails_cleanly(shop: Shop):
    shop.upload('site2.test', 'large.bin', secrets.token_bytes(1024 * 1024))
    small = shop.tmp / 'small'
    small.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', str(small)], check=True)
    try:
        result = shop.backup(dest=str(small))
        assert result.get('failed') is True
        assert 'ran out of space' in result['msg'] and 'partial backup was removed' in result['msg']
        assert os.listdir(small / 'shop') == []
    finally:
        subprocess.run(['umount', str(small)], check=True)


def test_retention_keeps_the_newest_good_backup(shop: Shop):
    first = shop.backup()['backup_id']
    second = shop.backup()['backup_id']
    # The second backup is damaged: it is not a good backup and is never deleted by retention.
    (shop.dest / 'shop' / second / 'manifest.json').write_text('{"broken"')
    third = shop.backup(keep=1)
    assert third.get('failed') is not True, third
    assert third['removed'] == [first]
    assert sorted(os.listdir(shop.dest / 'shop')) == sorted([second, third['backup_id']])
    # keep_days=0 alone removes everything older, but never the newest good backup.
    fourth = shop.backup(keep_days=0)
    assert fourth['removed'] == [third['backup_id']]
    assert sorted(os.listdir(shop.dest / 'shop')) == sorted([second, fourth['backup_id']])


def test_database_stopped_during_backup_fails_and_marks_nothing_complete(tmp_path):
    """A dump cut by the server going away: clear failure, partial removed, no backup marked complete."""
    db = PrivateMariaDB(str(tmp_path / 'db')).start()
    try:
        inst = tmp_path / 'lone'
        inst.mkdir()
        db.sql("CREATE USER 'u'@'127.0.0.1' IDENTIFIED BY 'pw'; GRANT ALL ON *.* TO 'u'@'127.0.0.1';"
               "CREATE DATABASE lone; USE lone;"
               "CREATE TABLE websites (id bigint PRIMARY KEY, root_path varchar(190), name varchar(190), mysql text, "
               "status tinyint, base_url varchar(190));"
               "INSERT INTO websites VALUES (1, '%s', 'lone', NULL, 1, 'http://lone.test');"
               "CREATE TABLE big (id int PRIMARY KEY, payload longblob);"
               "INSERT INTO big SELECT seq, RANDOM_BYTES(1024) FROM seq_1_to_200000;" % inst)
        (inst / 'config.json').write_text(json.dumps({'mysql': {'database': 'lone', 'user': 'u', 'password': 'pw',
                                                                'host': '127.0.0.1', 'port': db.port}}))
        dest = tmp_path / 'dest'
        killed = threading.Event()

        def kill_when_dumping() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if any(p.stat().st_size > 0 for p in dest.glob('shop*/.partial-*/site1-db.sql.gz')) or \
                        any(p.stat().st_size > 0 for p in dest.glob('lone/.partial-*/site1-db.sql.gz')):
                    db.proc.send_signal(signal.SIGKILL)
                    killed.set()
                    return
                time.sleep(0.005)

        watcher = threading.Thread(target=kill_when_dumping)
        watcher.start()
        result = run_module('backup', {'path': str(inst), 'dest': str(dest)}, tmp=tmp_path)
        watcher.join()
        assert killed.is_set(), 'the server was not stopped while the dump ran'
        assert result.get('failed') is True
        assert 'backup of site 1 (database lone' in result['msg'] and 'mariadb-dump exited with status' in result['msg']
        assert os.listdir(dest / 'lone') == []
        # And a backup attempted while the server is down fails before creating anything.
        down = run_module('backup', {'path': str(inst), 'dest': str(dest)}, tmp=tmp_path)
        assert down.get('failed') is True and 'is the database server up' in down['msg']
        assert os.listdir(dest / 'lone') == []
    finally:
        db.stop(remove=True)


def test_playbook_hot_backup_verifies_and_copies_to_the_controller(shop: Shop):
    """playbooks/backup.yml against this machine (connection local): verify + copy_to=controller."""
    sys.path.insert(0, COLLECTIONS)
    from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import verify_backup  # pylint: disable=import-outside-toplevel
    copy_dir = shop.tmp / 'controller'
    extra = {'opsguard_target': 'localhost', 'opsguard_backup_instances': [{'name': 'shop', 'directory': str(shop.path)}],
             'opsguard_backup_dest': str(shop.dest), 'opsguard_verify': True, 'opsguard_copy_to': 'controller',
             'opsguard_copy_dir': str(copy_dir), 'opsguard_backup_login_user': '', 'opsguard_keep': 2}
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_LOCALHOST_WARNING='false',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='false')
    playbook = [str(REPO / '.venv' / 'bin' / 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
                '-e', json.dumps(extra), '-e', 'ansible_python_interpreter=' + PYTHON, str(REPO / 'playbooks' / 'backup.yml')]
    for _run in range(3):
        proc = subprocess.run(playbook, capture_output=True, text=True, env=env, cwd=str(REPO), timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    backups = sorted(os.listdir(shop.dest / 'shop'))
    assert len(backups) == 2, 'keep=2 leaves the two newest of three'
    copied = sorted(os.listdir(copy_dir / 'localhost' / 'shop'))
    assert len(copied) == 3 and copied[-2:] == backups
    manifest = verify_backup(str(copy_dir / 'localhost' / 'shop' / backups[-1]))
    assert manifest['verified'] is True and manifest['sites'][0]['tables']['websites']['rows'] == 2


UNIT = """[Unit]
Description=AnQiCMS instance shop (test)
After=mariadb.service

[Service]
Type=simple
WorkingDirectory=/opt/anqicms/shop
ExecStart=/opt/anqicms/shop/anqicms -port 8001
Restart=on-failure
KillSignal=SIGTERM
TimeoutStopSec=20
"""


def test_fleet_cold_backup_playbook_stops_verifies_and_starts_again(lab_fleet, tmp_path):
    """playbooks/backup.yml on a fleet host: cold (graceful_stop of the unit), verify, copy to the controller."""
    sys.path.insert(0, COLLECTIONS)
    from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import verify_backup  # pylint: disable=import-outside-toplevel
    host = lab_fleet.hosts[0]
    release_zip = standin.build()

    def run(cmd: str) -> subprocess.CompletedProcess:
        return lab_fleet.exec(host, cmd, check=False, timeout=120)

    lab_fleet.exec(host, 'systemctl stop anqicms-shop.service; rm -rf /opt/anqicms/shop /srv/site2 /var/backups/anqicms', check=False)
    standin.deploy(run, lambda local, remote: lab_fleet.put(host, local, remote), '/opt/anqicms/shop', release_zip)
    lab_fleet.put(host, _write(tmp_path / 'unit', UNIT), '/etc/systemd/system/anqicms-shop.service')
    lab_fleet.exec(host, "mariadb -e \"DROP DATABASE IF EXISTS shop; DROP DATABASE IF EXISTS shop2; "
                         "CREATE OR REPLACE USER 'shop'@'127.0.0.1' IDENTIFIED BY 'fleet-pw'; "
                         "GRANT ALL ON *.* TO 'shop'@'127.0.0.1';\" && systemctl daemon-reload && "
                         "systemctl start anqicms-shop.service")
    base = 'http://%s:8001' % host.address
    _wait_http(base)
    standin.web_install(base, db_host='127.0.0.1', db_port=3306, database='shop', user='shop', password='fleet-pw',
                        admin_password='fleet-admin', site_url='http://site1.test')
    site2 = json.dumps({'database': 'shop2', 'user': 'shop', 'password': 'fleet-pw', 'host': '127.0.0.1', 'port': 3306,
                        'use_default': False})
    lab_fleet.exec(host, "mkdir -p /srv/site2 && mariadb shop -e \"INSERT INTO websites (id, root_path, name, mysql, status, "
                         "base_url) VALUES (2, '/srv/site2', 'second', '%s', 1, 'http://site2.test')\" && "
                         "systemctl restart anqicms-shop.service" % site2.replace('"', '\\"'))
    _wait_http(base)
    from harness import http  # pylint: disable=import-outside-toplevel
    for site in ('site1.test', 'site2.test'):
        status, _headers, body = http(base + '/api/archive', data=b'title=fleet+' + site.encode(),
                                      headers={'Host': site, 'Content-Type': 'application/x-www-form-urlencoded'})
        assert status == 200, body
    pid_before = lab_fleet.exec(host, 'systemctl show -p MainPID --value anqicms-shop.service').stdout.strip()

    copy_dir = tmp_path / 'controller'
    # No --limit: the first play checks the inputs on localhost; opsguard_target picks the host.
    proc = lab_fleet.playbook(str(REPO / 'playbooks' / 'backup.yml'), extra_vars={
        'opsguard_target': host.name, 'opsguard_backup_instances': [{'name': 'shop', 'directory': '/opt/anqicms/shop'}],
        'opsguard_cold': True, 'opsguard_verify': True, 'opsguard_copy_to': 'controller', 'opsguard_copy_dir': str(copy_dir)})
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    assert lab_fleet.exec(host, 'systemctl is-active anqicms-shop.service').stdout.strip() == 'active'
    pid_after = lab_fleet.exec(host, 'systemctl show -p MainPID --value anqicms-shop.service').stdout.strip()
    assert pid_after != pid_before, 'a cold backup stops and starts the instance'
    _wait_http(base)
    backups = os.listdir(copy_dir / host.name / 'shop')
    assert len(backups) == 1
    manifest = verify_backup(str(copy_dir / host.name / 'shop' / backups[0]))
    assert manifest['mode'] == 'cold' and manifest['verified'] is True and manifest['host'] == host.name
    assert [s['database'] for s in manifest['sites']] == ['shop', 'shop2']
    assert manifest['sites'][1]['tables']['archives']['rows'] == 1
    lab_fleet.exec(host, 'systemctl stop anqicms-shop.service; rm -f /etc/systemd/system/anqicms-shop.service; '
                         'systemctl daemon-reload', check=False)


def _write(path: pathlib.Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _wait_http(base: str, timeout: float = 30) -> None:
    from harness import http  # pylint: disable=import-outside-toplevel
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http(base + '/system/api/version/info', timeout=2)[0] in (200, 302):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError('%s did not answer within %ss' % (base, timeout))
