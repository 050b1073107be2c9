# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugin_utils/naming: how an instance is named (unit, directory, databases, user, backend, sites, records)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from ansible_collections.opsguard.anqicms.plugins.plugin_utils import naming as N

SECRET = 'S3cr3t-db-pw'


def test_an_instance_with_only_a_name_and_a_port_gets_every_default():
    got = N.normalize_instance({'name': 'site1', 'port': 8001, 'db_password': SECRET})
    assert got == {
        'name': 'site1', 'port': 8001, 'db_password': SECRET,
        'directory': '/opt/anqicms/site1', 'exe': '/opt/anqicms/site1/anqicms',
        'server_name': 'site1.localhost', 'base_url': 'http://site1.localhost',
        'database': 'anqicms_site1', 'db_user': 'anqicms_site1',
        'sites': [], 'site_names': ['site1.localhost'], 'databases': ['anqicms_site1'],
        'memory_max_bytes': None, 'unit': 'anqicms-site1.service', 'backend': '127.0.0.1:8001',
    }


def test_given_keys_win_and_sites_add_names_and_databases():
    entry = {'name': 'shop-2', 'port': '8002', 'directory': '/data/shop/', 'server_name': 'shop.example',
             'base_url': 'https://shop.example', 'database': 'shopdb', 'db_user': 'shopuser', 'memory_max_bytes': 536870912,
             'sites': [{'name': 'blog', 'server_name': 'blog.example'}, {'name': 'x-y.z', 'server_name': 'x.example'}],
             'extra': 'kept'}
    got = N.normalize_instance(entry, '/srv')
    assert got['directory'] == '/data/shop' and got['exe'] == '/data/shop/anqicms'
    assert got['server_name'] == 'shop.example' and got['base_url'] == 'https://shop.example'
    assert got['database'] == 'shopdb' and got['db_user'] == 'shopuser'
    assert got['site_names'] == ['shop.example', 'blog.example', 'x.example']
    assert got['databases'] == ['shopdb', 'shopdb_blog', 'shopdb_x_y_z']
    assert got['memory_max_bytes'] == 536870912 and got['extra'] == 'kept'
    assert got['unit'] == 'anqicms-shop-2.service' and got['backend'] == '127.0.0.1:8002'
    assert entry['directory'] == '/data/shop/', 'the input was modified'


@pytest.mark.parametrize('name, base_dir, directory, database', [
    ('site1', '/opt/anqicms', '/opt/anqicms/site1', 'anqicms_site1'),
    ('a-b', '/srv/anq/', '/srv/anq/a-b', 'anqicms_a_b'),
    ('c_d', '', '/opt/anqicms/c_d', 'anqicms_c_d'),
    ('e', None, '/opt/anqicms/e', 'anqicms_e'),
    ('root', '/', '/root', 'anqicms_root'),
])
def test_defaults_follow_the_name_and_the_base_directory(name, base_dir, directory, database):
    got = N.normalize_instance({'name': name, 'port': 8001}, base_dir)
    assert (got['directory'], got['database'], got['db_user']) == (directory, database, database)


@pytest.mark.parametrize('key, empty', [
    ('server_name', ''), ('server_name', None), ('database', ''), ('db_user', None), ('directory', ''),
    ('memory_max_bytes', 0), ('memory_max_bytes', None), ('memory_max_bytes', ''), ('sites', None), ('sites', []),
])
def test_an_empty_or_false_value_counts_as_not_given(key, empty):
    plain = N.normalize_instance({'name': 'site1', 'port': 8001})
    got = N.normalize_instance({'name': 'site1', 'port': 8001, key: empty})
    assert got[key] == plain[key]


def test_without_a_port_there_is_no_backend():
    got = N.normalize_instance({'name': 'db-only', 'db_password': SECRET})
    assert got['backend'] is None and 'port' not in got


@pytest.mark.parametrize('entry, fragment', [
    ('site1', 'app_instances item 1 must be a dict with name and port, got str'),
    ({'port': 8001}, 'app_instances item 1: name=None must be 1 to 64 characters'),
    ({'name': 'Site1'}, "name='Site1' must be 1 to 64"),
    ({'name': 'a' * 65}, 'must be 1 to 64 characters'),
    ({'name': 'a/b'}, "name='a/b'"),
    ({'name': 'site1\n'}, "name='site1\\n'"),
    ({'name': 's', 'port': '8001\n'}, "port='8001\\n'"),
    ({'name': ''}, "name=''"),
    ({'name': 7}, 'name=7'),
    ({'name': 's', 'port': 'http'}, "app_instances item 1 (s): port='http' is not a whole number from 1 to 65535"),
    ({'name': 's', 'port': 0}, 'port=0 is not a whole number'),
    ({'name': 's', 'port': 65536}, 'port=65536'),
    ({'name': 's', 'port': True}, 'port=True'),
    ({'name': 's', 'port': 80.5}, 'port=80.5'),
    ({'name': 's', 'directory': 'relative/dir'}, "directory='relative/dir' must be an absolute path"),
    ({'name': 's', 'database': ['x']}, 'database must be a string, got list'),
    ({'name': 's', 'sites': 'blog'}, 'sites must be a list of {name, server_name}, got str'),
    ({'name': 's', 'sites': ['blog']}, 'sites item 1 must be a dict with name and server_name'),
    ({'name': 's', 'sites': [{'name': 'blog'}]}, 'sites item 1 needs a non-empty server_name, got None'),
    ({'name': 's', 'sites': [{'name': ' ', 'server_name': 'b.example'}]}, "sites item 1 needs a non-empty name, got ' '"),
])
def test_a_bad_entry_is_refused_with_a_sentence_naming_it(entry, fragment):
    if isinstance(entry, dict):
        entry = dict(entry, db_password=SECRET)
    with pytest.raises(N.NamingError) as err:
        N.normalize_instances([entry])
    assert fragment in str(err.value)
    assert SECRET not in str(err.value)


def test_the_message_names_the_list_and_the_position():
    with pytest.raises(N.NamingError, match=r'^database_instances item 2 \(b\): port=-1 '):
        N.normalize_instances([{'name': 'a'}, {'name': 'b', 'port': -1}], variable='database_instances')


@pytest.mark.parametrize('entries, fragment', [
    ({'name': 'a'}, 'app_instances must be a list of instances, got dict'),
    ('site1', 'app_instances must be a list of instances, got str'),
    (5, 'got int'),
])
def test_a_list_that_is_not_a_list_is_refused(entries, fragment):
    with pytest.raises(N.NamingError, match=fragment):
        N.normalize_instances(entries)


@pytest.mark.parametrize('base_dir', ['relative', 5, ['/opt']])
def test_a_relative_base_directory_is_refused(base_dir):
    with pytest.raises(N.NamingError, match='base directory of app_instances must be an absolute path'):
        N.normalize_instances([{'name': 'a'}], base_dir)


@pytest.mark.parametrize('entries', [None, '', [], ()])
def test_nothing_gives_an_empty_list(entries):
    assert N.normalize_instances(entries) == []


@pytest.mark.parametrize('func, value, expected', [
    (N.slug, 'a-b.c d', 'a_b_c_d'),
    (N.slug, 'plain_1', 'plain_1'),
    (N.unit_name, 'site1', 'anqicms-site1.service'),
    (N.default_directory, 'x', '/opt/anqicms/x'),
    (N.strip_dir, '/opt/anqicms/site1//', '/opt/anqicms/site1'),
    (N.strip_dir, '///', '/'),
    (N.record_name, '/opt/anqicms/site1/', 'opt_anqicms_site1.json'),
    (N.record_name, '/srv/a', 'srv_a.json'),
    (N.upstream_name, 'www-main', 'anqicms_www_main'),
    (N.backend, 8001, '127.0.0.1:8001'),
])
def test_each_name_on_its_own(func, value, expected):
    assert func(value) == expected


NAMES = st.from_regex(r'[a-z0-9_-]{1,64}', fullmatch=True)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=NAMES, port=st.integers(1, 65535), password=st.text(max_size=20))
def test_normalizing_twice_changes_nothing_and_names_agree(name, port, password):
    once = N.normalize_instance({'name': name, 'port': port, 'db_password': password})
    assert N.normalize_instance(once) == once
    assert once['unit'] == 'anqicms-%s.service' % name
    assert once['directory'] == '/opt/anqicms/' + name
    assert once['database'] == once['db_user'] == 'anqicms_' + name.replace('-', '_')
    assert once['backend'] == '127.0.0.1:%d' % port


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(max_size=70), password=st.text(min_size=4, max_size=20).map(lambda text: '\u00a7%s\u00a7' % text))
def test_any_name_is_named_or_refused_and_the_password_never_shows(name, password):
    assume(password not in repr(name))
    try:
        got = N.normalize_instance({'name': name, 'db_password': password})
    except N.NamingError as err:
        assert password not in str(err)
    else:
        assert N.NAME_RE.match(got['name'])
