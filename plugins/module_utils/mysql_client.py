# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the MariaDB/MySQL command line clients with credentials that never touch a disk.

The ``[client]`` options (password included) live in an anonymous memory file (``memfd_create``,
mode 0600) that has no name in any file system. Each client process inherits its descriptor
(``pass_fds``) and reads it as ``--defaults-file=/dev/fd/N``; every open of ``/dev/fd/N`` starts at
offset 0, so one descriptor serves any number of clients, side by side and for dumps of any length.
The file disappears with the last descriptor: when this process exits or is SIGKILLed (and any
client it started has ended), nothing is left behind. The password is never on a command line.
Query results are read in batch mode and unescaped; nothing here loads a whole dump into memory.
Every value in a statement is a hex literal or a number (:mod:`.sql`): the statements mean the same under
any ``sql_mode`` of the server.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from ansible_collections.opsguard.anqicms.plugins.module_utils.sql import literal, literal_list, quote_ident

__all__ = ['MysqlClient', 'MysqlError', 'defaults_text', 'find_binary', 'login_argument_spec', 'login_from_params',
           'parse_batch', 'quote_ident', 'secret_fd', 'unescape_batch']

DUMP_BINARIES = ('mariadb-dump', 'mysqldump')
CLIENT_BINARIES = ('mariadb', 'mysql')
DUMP_OPTIONS = ('--single-transaction', '--quick', '--routines', '--triggers', '--hex-blob', '--events',
                '--default-character-set=utf8mb4')
_BATCH_ESCAPES = {'\\': '\\', 't': '\t', 'n': '\n', '0': '\0', 'r': '\r', 'Z': '\x1a', 'b': '\b'}


class MysqlError(Exception):
    """A client call that failed, with the client's own message."""


def find_binary(names: tuple, path: str | None = None) -> str | None:
    """First of ``names`` found on PATH."""
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


def unescape_batch(field: str) -> str | None:
    """Undo the escaping of ``mysql --batch`` output; the bare word NULL is None."""
    if field == 'NULL':
        return None
    if '\\' not in field:
        return field
    out = []
    i = 0
    n = len(field)
    while i < n:
        ch = field[i]
        if ch == '\\' and i + 1 < n:
            out.append(_BATCH_ESCAPES.get(field[i + 1], field[i + 1]))
            i += 2
            continue
        out.append(ch)
        i += 1
    return ''.join(out)


def parse_batch(text: str) -> list:
    """Rows of ``--batch --skip-column-names`` output as lists of strings/None."""
    rows = []
    for line in text.split('\n'):
        if line == '':
            continue
        rows.append([unescape_batch(f) for f in line.split('\t')])
    return rows


def defaults_text(conn: dict) -> str:
    """The [client] section for a connection dict (user, password, host, port, socket)."""
    lines = ['[client]']
    for key in ('user', 'password', 'host', 'port', 'socket'):
        value = conn.get(key)
        if value is None or value == '':
            continue
        text = str(value)
        if '\n' in text or '\r' in text or '\0' in text:
            raise MysqlError('the %s of the database connection contains a line break or a NUL byte' % key)
        if key == 'password':
            text = '"' + text.replace('\\', '\\\\').replace('"', '\\"') + '"'
        lines.append('%s=%s' % (key, text))
    if conn.get('socket'):
        lines.append('protocol=SOCKET')
    else:
        # AnQiCMS connects over TCP even to "localhost"; the client must do the same.
        lines.append('protocol=TCP')
    lines.append('default-character-set=utf8mb4')
    return '\n'.join(lines) + '\n'


def secret_fd(text: str) -> int:
    """A 0600 anonymous memory file holding ``text``, positioned at 0; the caller closes it.

    Falls back to an ``O_TMPFILE`` file (no name either, gone when closed) in ``/dev/shm`` where
    ``memfd_create`` is missing (glibc < 2.27). Never a named file: a SIGKILL must not leave it behind.
    """
    data = text.encode('utf-8')
    fd = -1
    memfd_create = getattr(os, 'memfd_create', None)
    if memfd_create is not None:
        try:
            fd = memfd_create('opsguard-mysql-client', getattr(os, 'MFD_CLOEXEC', 1))
        except OSError:
            fd = -1
    if fd < 0 and hasattr(os, 'O_TMPFILE'):
        for directory in ('/dev/shm', '/run/shm'):
            try:
                fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | getattr(os, 'O_CLOEXEC', 0), 0o600)
                break
            except OSError:
                continue
    if fd < 0:
        raise MysqlError('cannot hand the database password to the client without writing it to a named file: this host '
                         'has neither memfd_create nor O_TMPFILE on /dev/shm')
    try:
        # A memory file starts as 0777, and the clients ignore a world-writable option file.
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


class MysqlClient(object):
    """One server connection: options in an anonymous memory file plus helpers around the client binaries.

    Every process started from ``client_cmd``/``dump_cmd`` must be given ``pass_fds=client.pass_fds``.
    """

    def __init__(self, conn: dict, client: str | None = None, dump: str | None = None, timeout: float = 3600.0) -> None:
        self.conn = dict(conn)
        self.client = client or find_binary(CLIENT_BINARIES)
        self.dump = dump or find_binary(DUMP_BINARIES)
        if not self.client:
            raise MysqlError('neither mariadb nor mysql client binary was found on PATH; install mariadb-client')
        self.timeout = timeout
        self._fd = secret_fd(defaults_text(self.conn))
        self.pass_fds = (self._fd,)
        # What the client opens: its own inherited copy of the descriptor, at offset 0 on every open.
        self.defaults_file = ('/dev/fd/%d' if os.path.isdir('/dev/fd') else '/proc/self/fd/%d') % self._fd

    def describe(self) -> str:
        if self.conn.get('socket'):
            where = 'socket %s' % self.conn['socket']
        else:
            where = '%s:%s' % (self.conn.get('host') or 'localhost', self.conn.get('port') or 3306)
        return "user '%s' at %s" % (self.conn.get('user') or '', where)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self.pass_fds = ()

    def __enter__(self) -> MysqlClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def client_cmd(self, database: str | None = None, batch: bool = True) -> list:
        cmd = [self.client, '--defaults-file=' + self.defaults_file]
        if batch:
            cmd += ['--batch', '--skip-column-names']
        if database:
            cmd.append('--database=' + database)
        return cmd

    def dump_cmd(self, database: str) -> list:
        if not self.dump:
            raise MysqlError('neither mariadb-dump nor mysqldump was found on PATH; install mariadb-client')
        return [self.dump, '--defaults-file=' + self.defaults_file] + list(DUMP_OPTIONS) + ['--', database]

    def run_sql(self, sql: str, database: str | None = None) -> str:
        """Run statements through the client's stdin; return stdout or raise with its stderr."""
        try:
            proc = subprocess.run(self.client_cmd(database), input=sql.encode('utf-8'), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=self.timeout, check=False, pass_fds=self.pass_fds)
        except subprocess.TimeoutExpired as exc:
            raise MysqlError('the database client did not answer within %ss (%s)' % (self.timeout, self.describe())) from exc
        if proc.returncode != 0:
            raise MysqlError('%s (%s, exit status %d)' % (proc.stderr.decode('utf-8', 'replace').strip(), self.describe(),
                                                          proc.returncode))
        return proc.stdout.decode('utf-8', 'replace')

    def query(self, sql: str, database: str | None = None) -> list:
        return parse_batch(self.run_sql(sql, database))

    def server_version(self) -> str:
        rows = self.query('SELECT VERSION();')
        return rows[0][0] if rows else ''

    def database_exists(self, database: str) -> bool:
        rows = self.query('SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s;' % literal(database))
        return bool(rows) and rows[0][0] == '1'

    def tables(self, database: str) -> dict:
        """{table name: table type} of one database."""
        rows = self.query('SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s;'
                          % literal(database))
        return dict((r[0], r[1]) for r in rows)

    def table_stats(self, database: str) -> dict:
        """{table: {'rows': exact count, 'checksum': CHECKSUM TABLE}} for the base tables of a database.

        Each count comes back with the table's position in the sorted list (a number), never its name as a value.
        """
        names = sorted(t for t, kind in self.tables(database).items() if kind == 'BASE TABLE')
        if not names:
            return {}
        qualified = ', '.join('%s.%s' % (quote_ident(database), quote_ident(t)) for t in names)
        counts = ' UNION ALL '.join('SELECT %s, COUNT(*) FROM %s.%s' % (literal(index), quote_ident(database), quote_ident(t))
                                    for index, t in enumerate(names))
        out = self.query('%s;\nCHECKSUM TABLE %s EXTENDED;' % (counts, qualified))
        stats: dict = {}
        prefix = database + '.'
        for row in out[:len(names)]:
            stats[names[int(row[0])]] = {'rows': int(row[1])}
        for row in out[len(names):]:
            if len(row) == 2 and (row[0] or '').startswith(prefix) and row[0][len(prefix):] in stats:
                stats[row[0][len(prefix):]]['checksum'] = row[1]
        return stats

    # Kinds of the rows of schema_info, as numbers.
    _SCHEMA_KINDS = {'0': 'schema', '1': 'table', '2': 'views', '3': 'triggers', '4': 'routines', '5': 'events'}

    def schema_info(self, databases: list) -> dict:
        """One round trip: for each database whether it exists, its tables {name: type} and its object counts."""
        names = literal_list(databases)
        rows = self.query(
            "SELECT 0, SCHEMA_NAME, NULL, NULL FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN (%s) UNION ALL "
            "SELECT 1, TABLE_SCHEMA, TABLE_TYPE, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA IN (%s) UNION ALL "
            "SELECT 2, TABLE_SCHEMA, NULL, NULL FROM information_schema.VIEWS WHERE TABLE_SCHEMA IN (%s) UNION ALL "
            "SELECT 3, TRIGGER_SCHEMA, NULL, NULL FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA IN (%s) UNION ALL "
            "SELECT 4, ROUTINE_SCHEMA, NULL, NULL FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA IN (%s) UNION ALL "
            "SELECT 5, EVENT_SCHEMA, NULL, NULL FROM information_schema.EVENTS WHERE EVENT_SCHEMA IN (%s);"
            % ((names,) * 6))
        info = dict((d, {'exists': False, 'tables': {}, 'objects': {'views': 0, 'triggers': 0, 'routines': 0, 'events': 0}})
                    for d in databases)
        for row in rows:
            kind = self._SCHEMA_KINDS.get(row[0])
            entry = info.get(row[1]) if len(row) == 4 else None
            if entry is None or kind is None:
                continue
            if kind == 'schema':
                entry['exists'] = True
            elif kind == 'table':
                entry['tables'][row[3]] = row[2]
            else:
                entry['objects'][kind] += 1
        return info

    def objects(self, database: str) -> dict:
        """Counts of views, triggers, routines and events in a database."""
        q = literal(database)
        rows = self.query(
            "SELECT 2, COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s UNION ALL "
            "SELECT 3, COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s UNION ALL "
            "SELECT 4, COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s UNION ALL "
            "SELECT 5, COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s;" % (q, q, q, q))
        return dict((self._SCHEMA_KINDS[r[0]], int(r[1])) for r in rows)


def login_argument_spec() -> dict:
    """Argument spec of the login options (documented by the opsguard.anqicms.mysql_login doc fragment)."""
    return dict(
        login_user=dict(type='str'),
        login_password=dict(type='str', no_log=True),
        login_host=dict(type='str'),
        login_port=dict(type='int'),
        login_unix_socket=dict(type='path'),
    )


def login_from_params(params: dict) -> dict:
    """The login overrides given to a module, as a connection dict for MysqlClient."""
    return {'user': params['login_user'], 'password': params['login_password'], 'host': params['login_host'],
            'port': params['login_port'], 'socket': params['login_unix_socket']}
