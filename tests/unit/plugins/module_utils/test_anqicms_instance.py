# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import json
import os
import sys

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils.anqicms_instance import (
    config_port,
    connection,
    discover_sites,
    parse_site_mysql,
    read_instance_config,
    running_pids,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import (
    BackupError,
)


@pytest.mark.parametrize('value, expected', [(None, 3306), ('', 3306), (0, 3306), (3307, 3307), ('3307', 3307), (3307.0, 3307),
                                             ('x', None), (-1, None), (65536, None), (True, None), (float('nan'), None),
                                             (float('inf'), None), ([1], None), ({'a': 1}, None)])
def test_config_port(value, expected):
    if expected is None:
        with pytest.raises(BackupError, match='which is no TCP port'):
            config_port(value, 'config.json mysql.port', 3306)
    else:
        assert config_port(value, 'config.json mysql.port', 3306) == expected


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
    with pytest.raises(BackupError, match=r'site 5: websites.mysql is not valid JSON \(nested too deeply\)'):
        parse_site_mysql('[' * 100000 + ']' * 100000, default, 5)


def test_login_user_never_inherits_the_configured_password():
    conn = {'user': 'app', 'password': 'secret', 'host': 'db', 'port': 3306}
    assert connection(conn, {'user': 'root', 'socket': '/run/mysqld/mysqld.sock'}) == {
        'user': 'root', 'password': None, 'host': None, 'port': None, 'socket': '/run/mysqld/mysqld.sock'}
    assert connection(conn, {'host': '127.0.0.1'})['password'] == 'secret'


def test_running_is_established_from_the_resolved_exe():
    assert os.getpid() in running_pids(os.path.realpath(sys.executable))
    assert running_pids('/nonexistent/anqicms') == []
