# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An in-memory stand-in for a MariaDB server and for MysqlClient, for the backup and restore workflow tests.

The server keeps ``{database: {table: rows}}`` and understands the statements the workflows send: CREATE and DROP
DATABASE, RENAME TABLE (atomic: all pairs or none), and the information_schema queries of MysqlClient (answered
from the state, whatever literals they use). Dumps are real processes that print ``CREATE TABLE`` lines and the
completion trailer; loads are real processes that copy their stdin to a file, applied to the state on the next
statement. ``fail(sql)`` decides which statement fails (MysqlError), so a test can break a workflow anywhere.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import weakref

from ansible_collections.opsguard.anqicms.plugins.module_utils.mysql_client import MysqlError

IDENT = r'`((?:[^`]|``)+)`'


def unquote(name: str) -> str:
    return name.replace('``', '`')


class FakeServer(object):
    def __init__(self, databases: dict | None = None, version: str = '10.11.6-MariaDB', sites_rows: list | None = None) -> None:
        self.databases = {db: dict(tables) for db, tables in (databases or {}).items()}
        self.version = version
        self.sites_rows = sites_rows or []
        self.statements: list = []
        self.fail = lambda sql: None
        self.spool = tempfile.mkdtemp(prefix='fake-mariadb-')
        weakref.finalize(self, shutil.rmtree, self.spool, True)  # removed with the server, or at exit
        self.loads = 0
        self.clients: list = []

    def state(self) -> dict:
        self.apply_loads()
        return {db: dict(tables) for db, tables in self.databases.items()}

    def apply_loads(self) -> None:
        for name in sorted(n for n in os.listdir(self.spool) if not n.endswith('.tmp')):
            path = os.path.join(self.spool, name)
            with open(path, 'rb') as handle:
                text = handle.read().decode('utf-8')
            os.unlink(path)
            current = None
            for line in text.split('\n'):
                use = re.match(r'USE %s;' % IDENT, line)
                if use:
                    current = unquote(use.group(1))
                create = re.match(r'CREATE TABLE %s \((\d+) rows\);' % IDENT, line)
                if create and current is not None:
                    self.databases[current][unquote(create.group(1))] = int(create.group(2))

    def run_sql(self, sql: str) -> str:
        self.apply_loads()
        self.statements.append(sql)
        error = self.fail(sql)
        if error:
            raise MysqlError(error)
        for statement in [s for s in sql.split('\n') if s.strip()]:
            self.execute(statement)
        return ''

    def execute(self, statement: str) -> None:
        create = re.match(r'CREATE DATABASE %s' % IDENT, statement)
        drop = re.match(r'DROP DATABASE (IF EXISTS )?%s;' % IDENT, statement)
        if create:
            name = unquote(create.group(1))
            if name in self.databases:
                raise MysqlError("ERROR 1007 (HY000): Can't create database '%s'; database exists" % name)
            self.databases[name] = {}
        elif drop:
            name = unquote(drop.group(2))
            if name not in self.databases and not drop.group(1):
                raise MysqlError("ERROR 1008 (HY000): Can't drop database '%s'; database doesn't exist" % name)
            self.databases.pop(name, None)
        elif statement.startswith('RENAME TABLE '):
            pairs = re.findall(r'%s\.%s TO %s\.%s' % (IDENT, IDENT, IDENT, IDENT), statement)
            moved = {db: dict(tables) for db, tables in self.databases.items()}
            for src_db, src_t, dst_db, dst_t in pairs:
                src_db, src_t, dst_db, dst_t = (unquote(x) for x in (src_db, src_t, dst_db, dst_t))
                if src_t not in moved.get(src_db, {}) or dst_db not in moved or dst_t in moved[dst_db]:
                    raise MysqlError('ERROR 1146: cannot rename %s.%s to %s.%s' % (src_db, src_t, dst_db, dst_t))
                moved[dst_db][dst_t] = moved[src_db].pop(src_t)
            self.databases = moved
        else:
            raise AssertionError('the fake server does not know %r' % statement)


class FakeClient(object):
    """The MysqlClient methods the workflows use, against a FakeServer."""

    def __init__(self, server: FakeServer, conn: dict, timeout: float = 3600.0) -> None:
        self.server = server
        self.conn = dict(conn)
        self.timeout = timeout
        self.pass_fds = ()
        self.closed = False
        server.clients.append(self)

    def close(self) -> None:
        self.closed = True

    def run_sql(self, sql: str, database: str | None = None) -> str:
        return self.server.run_sql(sql)

    def query(self, sql: str, database: str | None = None) -> list:
        self.server.apply_loads()
        self.server.statements.append(sql)
        error = self.server.fail(sql)
        if error:
            raise MysqlError(error)
        rows = []
        if sql.startswith('SELECT VERSION(), 0, 0, 0, 0;'):
            rows.append([self.server.version, '0', '0', '0', '0'])
        if 'FROM websites' in sql:
            rows += [list(r) for r in self.server.sites_rows]
        return rows

    def server_version(self) -> str:
        return self.server.version

    def database_exists(self, database: str) -> bool:
        return database in self.server.state()

    def tables(self, database: str) -> dict:
        return dict((t, 'BASE TABLE') for t in self.server.state().get(database, {}))

    def table_stats(self, database: str) -> dict:
        return dict((t, {'rows': rows, 'checksum': str(rows * 7)}) for t, rows in self.server.state().get(database, {}).items())

    def schema_info(self, databases: list) -> dict:
        state = self.server.state()
        return dict((d, {'exists': d in state, 'tables': dict((t, 'BASE TABLE') for t in state.get(d, {})),
                         'objects': {'views': 0, 'triggers': 0, 'routines': 0, 'events': 0}}) for d in databases)

    def client_cmd(self, database: str | None = None, batch: bool = True) -> list:
        self.server.loads += 1
        path = os.path.join(self.server.spool, 'load-%06d' % self.server.loads)
        prefix = ('USE `%s`;\n' % database.replace('`', '``')) if database else ''
        code = ('import sys\ndata = sys.stdin.buffer.read()\nopen(%r, "wb").write(%r.encode() + data)\n' % (path + '.tmp', prefix)
                + 'import os; os.rename(%r, %r)\n' % (path + '.tmp', path))
        return [sys.executable, '-c', code]

    def dump_cmd(self, database: str) -> list:
        tables = self.server.state()[database]
        text = ''.join('CREATE TABLE `%s` (%d rows);\n' % (t.replace('`', '``'), rows) for t, rows in sorted(tables.items()))
        text += '-- Dump completed on 2026-01-01 00:00:00\n'
        return [sys.executable, '-c', 'import sys; sys.stdout.write(%r)' % text]


def factory(server: FakeServer):
    """A client_factory for the workflow classes."""
    return lambda conn, timeout=3600.0: FakeClient(server, conn, timeout)
