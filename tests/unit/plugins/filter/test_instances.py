# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter anqicms_instances: the app role's instance list with every name filled in."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.filter import instances as F

FILTER_DIR = pathlib.Path(F.__file__).parent
# What the role's scenario fleet deploys (tests/scenarios/test_roles.py).
SCENARIO = [
    {'name': 'site1', 'port': 8001, 'db_password': 'pw1', 'server_name': 'site1.test'},
    {'name': 'site2', 'port': 8002, 'db_password': 'pw2', 'server_name': 'site2.test',
     'sites': [{'name': 'blog', 'server_name': 'blog.site2.test'}]},
]


def test_the_scenario_instances():
    got = F.anqicms_instances(SCENARIO, '/opt/anqicms')
    assert [i['unit'] for i in got] == ['anqicms-site1.service', 'anqicms-site2.service']
    assert [i['directory'] for i in got] == ['/opt/anqicms/site1', '/opt/anqicms/site2']
    assert [i['databases'] for i in got] == [['anqicms_site1'], ['anqicms_site2', 'anqicms_site2_blog']]
    assert [i['db_user'] for i in got] == ['anqicms_site1', 'anqicms_site2']
    assert [i['site_names'] for i in got] == [['site1.test'], ['site2.test', 'blog.site2.test']]
    assert [i['base_url'] for i in got] == ['http://site1.test', 'http://site2.test']
    assert [i['backend'] for i in got] == ['127.0.0.1:8001', '127.0.0.1:8002']


@pytest.mark.parametrize('base_dir, expected', [
    ('/srv/anq', '/srv/anq/a'),
    ('/srv/anq/', '/srv/anq/a'),
])
def test_the_base_directory(base_dir, expected):
    assert F.anqicms_instances([{'name': 'a', 'port': 8001}], base_dir)[0]['directory'] == expected


def test_the_default_base_directory():
    assert F.anqicms_instances([{'name': 'a', 'port': 8001}])[0]['directory'] == '/opt/anqicms/a'


@pytest.mark.parametrize('entries, variable, message', [
    ([{'port': 8001, 'db_password': 'hidden-pw'}], 'app_instances', 'app_instances item 1: name=None must be 1 to 64 characters'),
    ([{'name': 'a', 'port': 'x', 'db_password': 'hidden-pw'}], 'database_instances',
     "database_instances item 1 (a): port='x' is not a whole number from 1 to 65535"),
    ({'name': 'a'}, 'app_instances', 'app_instances must be a list of instances, got dict'),
])
def test_a_bad_entry_is_an_ansible_filter_error_naming_it(entries, variable, message):
    with pytest.raises(AnsibleFilterError) as err:
        F.anqicms_instances(entries, '/opt/anqicms', variable)
    assert message in str(err.value)
    assert 'hidden-pw' not in str(err.value)


@pytest.mark.parametrize('name', ['anqicms_instances', 'anqicms_port_clashes'])
def test_each_filter_has_its_documentation(name):
    doc = yaml.safe_load((FILTER_DIR / (name + '.yml')).read_text(encoding='utf-8'))
    assert doc['DOCUMENTATION']['name'] == name
    assert set(doc) == {'DOCUMENTATION', 'EXAMPLES', 'RETURN'}


# ----------------------------------------------------------------------------------------------- anqicms_port_clashes

SS = [
    'LISTEN 0      80     127.0.0.1:3306       0.0.0.0:*    users:(("mariadbd",pid=812,fd=20))',
    'LISTEN 0      4096   *:8001               *:*          users:(("anqicms",pid=1201,fd=7))',
    'LISTEN 0      4096   [::]:8002            [::]:*       users:(("anqicms",pid=999,fd=7))',
    'LISTEN 0      511    0.0.0.0:80           0.0.0.0:*    users:(("nginx",pid=700,fd=6),("nginx",pid=701,fd=6))',
    'LISTEN 0      511    0.0.0.0:18001        0.0.0.0:*',
]
UNITS = 'Id=anqicms-site1.service\nMainPID=1201\n\nId=anqicms-site2.service\nMainPID=0\n'


def test_the_filters_are_registered_under_their_names():
    assert F.FilterModule().filters() == {'anqicms_instances': F.anqicms_instances, 'anqicms_port_clashes': F.anqicms_port_clashes}


@pytest.mark.parametrize('instances, expected', [
    ([{'name': 'site1', 'port': 8001}], []),                                      # its own unit's process
    ([{'name': 'site1', 'port': 8001}, {'name': 'site2', 'port': 8002}],
     ['site2: port 8002 is held by users:(("anqicms",pid=999,fd=7))']),           # a manually started copy
    ([{'name': 'site3', 'port': 3306}], ['site3: port 3306 is held by users:(("mariadbd",pid=812,fd=20))']),
    ([{'name': 'site3', 'port': '80'}], ['site3: port 80 is held by users:(("nginx",pid=700,fd=6),("nginx",pid=701,fd=6))']),
    ([{'name': 'site3', 'port': 18001}], ['site3: port 18001 is held by an unknown process']),
    ([{'name': 'site3', 'port': 1800}], []),                                      # a prefix of a held port is free
    ([{'name': 'site3', 'port': 9000}], []),
    ([{'name': 'db-only'}], []),
])
def test_ports_held_by_others_are_named(instances, expected):
    assert F.anqicms_port_clashes(instances, SS, UNITS) == expected


def test_text_and_lines_give_the_same_answer():
    instances = [{'name': 'site2', 'port': 8002}]
    assert F.anqicms_port_clashes(instances, '\n'.join(SS), UNITS.splitlines()) == F.anqicms_port_clashes(instances, SS, UNITS)


def test_without_unit_status_every_holder_is_a_clash():
    got = F.anqicms_port_clashes([{'name': 'site1', 'port': 8001}], SS)
    assert got == ['site1: port 8001 is held by users:(("anqicms",pid=1201,fd=7))']


def test_a_socket_on_two_addresses_is_one_clash():
    lines = ['LISTEN 0 4096 0.0.0.0:8002 0.0.0.0:* users:(("x",pid=5,fd=3))', 'LISTEN 0 4096 [::]:8002 [::]:* users:(("x",pid=5,fd=3))']
    assert F.anqicms_port_clashes([{'name': 'a', 'port': 8002}], lines) == ['a: port 8002 is held by users:(("x",pid=5,fd=3))']


@pytest.mark.parametrize('listeners, unit_status, message', [
    (None, '', 'anqicms_port_clashes: listeners must be text or a list of lines, got NoneType'),
    ([1, 2], '', 'listeners must be text or a list of lines, got list'),
    (SS, {'MainPID': 1}, 'unit_status must be text or a list of lines, got dict'),
])
def test_bad_command_output_is_refused(listeners, unit_status, message):
    with pytest.raises(AnsibleFilterError, match=message):
        F.anqicms_port_clashes([{'name': 'a', 'port': 1}], listeners, unit_status)
