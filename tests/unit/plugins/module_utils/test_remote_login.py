# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""login_host/login_port reach every database connection backup and restore open (a database on another host).

Every client the workflows make is recorded with what it was used for; each must point at the remote server over TCP
with the dedicated account, and the real client must carry host and password only in its anonymous defaults file.
"""
from __future__ import annotations

import os

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_workflow import Backup
from ansible_collections.opsguard.anqicms.plugins.module_utils.mysql_client import MysqlClient
from ansible_collections.opsguard.anqicms.plugins.module_utils.restore_workflow import Restore
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.fake_mariadb import FakeClient, FakeServer
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.test_backup_workflow import backup_params, two_sites
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.test_restore_workflow import restore_params

REMOTE = {'login_user': 'opsguard_restore', 'login_password': 'S3cret "pw"', 'login_host': 'db.example.test', 'login_port': 3307}


class RecordingClient(FakeClient):
    """A FakeClient that records, per call, which connection it was made for."""

    calls: list = []

    def _record(self, what: str) -> None:
        RecordingClient.calls.append((what, dict(self.conn)))

    def run_sql(self, sql: str, database: str | None = None) -> str:
        self._record(sql.split(' ', 2)[0] + ' ' + sql.split(' ', 2)[1] if ' ' in sql else sql)
        return super().run_sql(sql, database)

    def query(self, sql: str, database: str | None = None) -> list:
        self._record('query')
        return super().query(sql, database)

    def schema_info(self, databases: list) -> dict:
        self._record('schema_info')
        return super().schema_info(databases)

    def table_stats(self, database: str) -> dict:
        self._record('table_stats')
        return super().table_stats(database)

    def client_cmd(self, database: str | None = None, batch: bool = True) -> list:
        self._record('load' if not batch else 'client')
        return super().client_cmd(database, batch)

    def dump_cmd(self, database: str) -> list:
        self._record('dump')
        return super().dump_cmd(database)


def recording(server: FakeServer):
    RecordingClient.calls = []
    return lambda conn, timeout=3600.0: RecordingClient(server, conn, timeout)


def assert_remote(calls: list) -> None:
    assert calls, 'no database call was made'
    for what, conn in calls:
        assert (conn['host'], conn['port'], conn.get('socket')) == ('db.example.test', 3307, None), (what, conn)
        assert (conn['user'], conn['password']) == ('opsguard_restore', 'S3cret "pw"'), what


@pytest.fixture
def backed_up(tmp_path):
    """Two sites (site 2 on its own database, configured in the websites table) and a verified backup of both."""
    inst, two, server = two_sites(tmp_path)
    Backup(backup_params(str(inst), str(tmp_path / 'dest'), verify=True, **REMOTE), client_factory=recording(server),
           running=lambda exe: []).run()
    return inst, server, list(RecordingClient.calls)


def test_backup_sends_every_dump_and_scratch_load_to_the_remote_server(backed_up):
    dummy, server, calls = backed_up
    kinds = [what for what, dummy in calls]
    assert kinds.count('dump') == 2 and kinds.count('load') == 2, kinds
    assert 'CREATE DATABASE' in kinds and 'DROP DATABASE' in kinds, kinds
    assert_remote(calls)
    assert server.clients and all(c.closed for c in server.clients)


def test_restore_sends_staging_swap_and_clean_up_to_the_remote_server(backed_up, tmp_path):
    inst, server, dummy = backed_up
    server.databases['shop']['archives'] = 99
    result = Restore(restore_params(str(inst), str(tmp_path / 'dest'), keep_previous=False, **REMOTE),
                     client_factory=recording(server), running=lambda exe: [], token='r3m0t3').run()
    calls = list(RecordingClient.calls)
    kinds = [what for what, dummy in calls]
    # Per site: the staging database created, the dump loaded into it, the swap, the clean-up.
    assert kinds.count('CREATE DATABASE') >= 4 and kinds.count('load') == 2, kinds
    assert 'RENAME TABLE' in kinds and 'DROP DATABASE' in kinds and 'schema_info' in kinds, kinds
    assert_remote(calls)
    assert server.state()['shop']['archives'] == 10 and [d['database'] for d in result['databases']] == ['shop', 'two']
    assert all(c.closed for c in server.clients)


def test_a_socket_login_never_carries_the_configured_host(tmp_path):
    inst, dummy, server = two_sites(tmp_path)
    Backup(backup_params(str(inst), str(tmp_path / 'dest'), login_user='root', login_unix_socket='/run/mysqld/mysqld.sock'),
           client_factory=recording(server), running=lambda exe: []).run()
    assert RecordingClient.calls
    for what, conn in RecordingClient.calls:
        assert (conn['socket'], conn['host'], conn['port'], conn['user']) == ('/run/mysqld/mysqld.sock', None, None, 'root'), what


def test_the_real_client_keeps_host_and_password_out_of_its_command_lines(backed_up, tmp_path):
    inst, dummy, dummy2 = backed_up
    made: list = []

    def real(conn, timeout=3600.0):
        client = MysqlClient(conn, client='/bin/true', dump='/bin/true', timeout=timeout)
        made.append(client)
        return client

    restore = Restore(restore_params(str(inst), str(tmp_path / 'dest'), **REMOTE), client_factory=real, running=lambda exe: [])
    client, dummy = restore.client_for({'database': 'shop', 'user': 'app', 'password': 'pw', 'host': '127.0.0.1', 'port': 3306})
    try:
        argv = ' '.join(client.client_cmd('shop', batch=False) + client.dump_cmd('shop'))
        assert 'S3cret' not in argv and 'db.example.test' not in argv and '3307' not in argv, argv
        with open('/proc/self/fd/%d' % client.pass_fds[0], encoding='utf-8') as handle:
            text = handle.read()
        assert 'host=db.example.test\n' in text and 'port=3307\n' in text and 'protocol=TCP\n' in text, text
        assert 'user=opsguard_restore\n' in text and 'password="S3cret \\"pw\\""\n' in text and 'socket=' not in text, text
        assert os.readlink('/proc/self/fd/%d' % client.pass_fds[0]).startswith(('/memfd:', '/dev/shm/')), 'not an anonymous file'
    finally:
        for one in made:
            one.close()
