# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQL values as hex literals: built right, used by every statement MysqlClient sends, and read back unchanged by a
real MariaDB under sql_mode NO_BACKSLASH_ESCAPES (when this machine can start a private one)."""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.opsguard.anqicms.plugins.module_utils.anqicms_instance import SITES_SQL
from ansible_collections.opsguard.anqicms.plugins.module_utils.mysql_client import MysqlClient
from ansible_collections.opsguard.anqicms.plugins.module_utils.sql import HEX_LITERAL_RE, SqlError, literal, literal_list, quote_ident

NASTY = ["it's", 'back\\slash', 'nul\0byte', 'quote"double', 'tab\tnew\nline', 'é中文🙂', "x'; DROP DATABASE mysql; --", '']
NAMES = st.text(alphabet=st.characters(blacklist_categories=('Cs',), blacklist_characters='\0'), min_size=1, max_size=30)


def unhex(text: str) -> bytes:
    match = HEX_LITERAL_RE.fullmatch(text)
    assert match, text
    return bytes.fromhex(text[2:-1])


@pytest.mark.parametrize('value', NASTY)
def test_a_string_becomes_a_hex_literal_of_its_utf8_bytes(value):
    text = literal(value)
    assert unhex(text) == value.encode('utf-8')
    assert not set(text[2:-1]) - set('0123456789ABCDEF'), 'nothing but hex digits between the quotes'


@given(value=st.one_of(st.text(alphabet=st.characters(blacklist_categories=('Cs',))), st.binary()))
def test_any_string_or_bytes_round_trips(value):
    raw = value if isinstance(value, bytes) else value.encode('utf-8')
    assert unhex(literal(value)) == raw


@given(value=st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False)))
def test_numbers_stay_numbers(value):
    assert type(value)(literal(value)) == value


@pytest.mark.parametrize('value', [True, float('nan'), float('inf'), {'a': 1}, ['x'], '\ud800'])
def test_what_is_no_sql_value_is_refused_with_a_sentence(value):
    with pytest.raises(SqlError) as refused:
        literal(value)
    assert str(refused.value)


def test_null_and_lists():
    assert literal(None) == 'NULL'
    assert literal_list(['a', 1]) == '%s, 1' % literal('a')
    with pytest.raises(SqlError, match='empty list'):
        literal_list([])


@given(name=NAMES)
def test_identifiers_double_their_backticks(name):
    quoted = quote_ident(name)
    assert quoted[0] == quoted[-1] == '`' and quoted[1:-1].replace('``', '`') == name


class RecordingClient(MysqlClient):
    """MysqlClient whose statements are recorded instead of sent; answers as a server holding ``tables``."""

    def __init__(self, tables: dict) -> None:
        super().__init__({'user': 'u', 'host': '127.0.0.1', 'port': 3306}, client='/bin/true', dump='/bin/true')
        self.sent: list = []
        self.answer_tables = tables

    def run_sql(self, sql: str, database: str | None = None) -> str:
        self.sent.append(sql)
        if 'SELECT TABLE_NAME, TABLE_TYPE' in sql:
            return ''.join('%s\tBASE TABLE\n' % t.replace('\\', '\\\\').replace('\t', '\\t').replace('\n', '\\n')
                           for t in self.answer_tables)
        if 'SELECT 0, COUNT(*)' in sql:
            names = sorted(self.answer_tables)
            return ''.join('%d\t%d\n' % (i, self.answer_tables[t]) for i, t in enumerate(names))
        return ''


def quoted_outside_hex(sql: str) -> list:
    """Quote characters and backslashes left once every hex literal and every quoted identifier is taken out."""
    rest = HEX_LITERAL_RE.sub('', re.sub(r'`(?:[^`]|``)*`', '', sql))
    return [c for c in rest if c in '\'"\\']


# A table named NULL reads back as NULL from batch output, whatever the literals: left out here.
TABLES = st.dictionaries(NAMES.filter(lambda n: n != 'NULL'), st.integers(min_value=0, max_value=10 ** 6), max_size=4)


@settings(max_examples=60, deadline=None)
@given(database=NAMES, tables=TABLES)
def test_every_value_mysql_client_sends_is_a_hex_literal_or_a_number(database, tables):
    with RecordingClient(tables) as client:
        client.database_exists(database)
        client.tables(database)
        stats = client.table_stats(database)
        client.schema_info([database, database + '_new'])
        client.objects(database)
    assert dict((t, s['rows']) for t, s in stats.items()) == tables
    for sql in client.sent:
        assert quoted_outside_hex(sql) == [], sql
    values = [bytes.fromhex(m[2:-1]).decode('utf-8') for sql in client.sent for m in HEX_LITERAL_RE.findall(sql)]
    assert database in values and all(v in (database, database + '_new') for v in values), values


def test_the_sites_query_holds_no_quoted_value():
    assert quoted_outside_hex(SITES_SQL) == []


# --- a real MariaDB under NO_BACKSLASH_ESCAPES ---------------------------------------------------------------------

def private_mariadb_class():
    here = os.path.dirname(os.path.abspath(__file__))
    files = os.path.join(here, '..', '..', '..', 'integration', 'targets', 'setup_private_mariadb', 'files')
    if not os.path.isfile(os.path.join(files, 'private_mariadb.py')):
        return None
    sys.path.insert(0, files)
    try:
        from private_mariadb import PrivateMariaDB  # pylint: disable=import-error,import-outside-toplevel
    finally:
        sys.path.remove(files)
    return PrivateMariaDB


@pytest.fixture(scope='module')
def mariadb():
    cls = private_mariadb_class()
    if cls is None or os.geteuid() != 0 or not all(shutil.which(b) for b in ('mariadbd', 'mariadb-install-db', 'mariadb')):
        pytest.skip('needs root, mariadbd, mariadb-install-db and the private MariaDB harness')
    base = tempfile.mkdtemp(prefix='opsg-sql-')
    server = cls(base)
    try:
        server.start()
        server.sql("SET GLOBAL sql_mode = 'NO_BACKSLASH_ESCAPES,ANSI_QUOTES,STRICT_ALL_TABLES';")
        yield server
    finally:
        server.stop(remove=True)
        shutil.rmtree(base, ignore_errors=True)


def test_values_and_names_round_trip_through_mariadb_without_backslash_escapes(mariadb):
    tables = ["it's", 'back\\slash', 'quote"double', 'é中文', 'tab\tin']
    with MysqlClient({'user': 'root', 'socket': mariadb.socket}) as client:
        assert 'NO_BACKSLASH_ESCAPES' in client.query('SELECT @@SESSION.sql_mode;')[0][0]
        for value in NASTY:
            rows = client.query('SELECT HEX(%s), %s = %s;' % (literal(value), literal(value), literal(value)))
            assert bytes.fromhex(rows[0][0]) == value.encode('utf-8') and rows[0][1] == '1'
            # Batch output escapes NUL, tab and line breaks, and parse_batch undoes that; an empty value is an empty line.
            assert client.query('SELECT CONVERT(%s USING utf8mb4), 1;' % literal(value))[0] == [value, '1']
        database = "we'ird\\db é"
        client.run_sql('CREATE DATABASE %s;' % quote_ident(database))
        try:
            for table in tables:
                client.run_sql('CREATE TABLE %s.%s (a INT PRIMARY KEY); INSERT INTO %s.%s VALUES (1), (2);'
                               % (quote_ident(database), quote_ident(table), quote_ident(database), quote_ident(table)))
            assert client.database_exists(database) and not client.database_exists(database + 'x')
            assert sorted(client.tables(database)) == sorted(tables)
            stats = client.table_stats(database)
            assert sorted(stats) == sorted(tables) and all(s['rows'] == 2 and s['checksum'] for s in stats.values())
            info = client.schema_info([database, 'missing'])
            assert info[database]['exists'] and sorted(info[database]['tables']) == sorted(tables)
            assert not info['missing']['exists'] and client.objects(database) == {'views': 0, 'triggers': 0, 'routines': 0, 'events': 0}
        finally:
            client.run_sql('DROP DATABASE %s;' % quote_ident(database))
