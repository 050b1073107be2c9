# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils.mysql_client import (
    MysqlClient,
    MysqlError,
    defaults_text,
    parse_batch,
    quote_ident,
    quote_string,
    unescape_batch,
)


def test_defaults_file_is_private_and_removed(tmp_path):
    client = MysqlClient({'user': 'app', 'password': 'pa"ss\\w#rd', 'host': '127.0.0.1', 'port': 3307}, client='/bin/true')
    path = client.defaults_file
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600 and stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    with open(path) as handle:
        text = handle.read()
    assert 'password="pa\\"ss\\\\w#rd"' in text and 'protocol=TCP' in text and 'port=3307' in text
    cmd = client.dump_cmd('shop') if client.dump else client.client_cmd('shop')
    assert not any('pa"ss' in part for part in cmd), 'the password must never be on a command line'
    client.close()
    assert not os.path.exists(path)


def test_socket_connection_uses_the_socket():
    text = defaults_text({'user': 'root', 'socket': '/run/mysqld/mysqld.sock'})
    assert 'socket=/run/mysqld/mysqld.sock' in text and 'protocol=SOCKET' in text and 'password' not in text


def test_line_breaks_in_credentials_are_refused():
    with pytest.raises(MysqlError, match='password .*line break'):
        defaults_text({'user': 'u', 'password': 'a\nhost=evil'})


@pytest.mark.parametrize('raw, value', [
    ('plain', 'plain'), ('NULL', None), ('a\\tb', 'a\tb'), ('a\\nb', 'a\nb'), ('back\\\\slash', 'back\\slash'), ('z\\0', 'z\0'),
])
def test_unescape_batch(raw, value):
    assert unescape_batch(raw) == value


def test_parse_batch_rows():
    assert parse_batch('1\ta\\tb\n2\tNULL\n') == [['1', 'a\tb'], ['2', None]]


def test_quoting():
    assert quote_ident('we`ird') == '`we``ird`'
    assert quote_string("it's \\") == "'it\\'s \\\\'"
    with pytest.raises(MysqlError):
        quote_ident('')
