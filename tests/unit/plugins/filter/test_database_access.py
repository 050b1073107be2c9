"""Unit tests of the database_login_problems and database_grants filters and of the playbook input type host."""
from __future__ import annotations

import re

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.filter.database_access import (
    FilterModule, database_grants, database_login_problems)
from ansible_collections.opsguard.anqicms.plugins.filter.instances import anqicms_instances
from ansible_collections.opsguard.anqicms.plugins.filter.playbook_inputs import playbook_input_problems, playbook_inputs
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_workflow import SCRATCH_PREFIX
from ansible_collections.opsguard.anqicms.plugins.module_utils.restore_workflow import derived_name

P = 'opsguard_restore'


@pytest.mark.parametrize('values', [
    {},
    {'opsguard_restore_login_user': 'root', 'opsguard_restore_login_unix_socket': '/run/mysqld/mysqld.sock'},
    {'opsguard_restore_login_host': '', 'opsguard_restore_login_port': None},
    {'opsguard_restore_login_host': '10.0.0.11', 'opsguard_restore_login_user': 'opsguard_restore',
     'opsguard_restore_login_password': 'pw', 'opsguard_restore_login_port': 3307},
    {'opsguard_restore_login_host': 'db1', 'opsguard_restore_login_user': '', 'opsguard_restore_login_unix_socket': None},
])
def test_consistent_logins_have_no_problem(values):
    assert database_login_problems(values, P) == []


@pytest.mark.parametrize('values, default_user, words', [
    ({'opsguard_restore_login_host': 'db1', 'opsguard_restore_login_password': 'pw',
      'opsguard_restore_login_unix_socket': '/run/mysqld/mysqld.sock'}, 'root',
     ['opsguard_restore_login_host and opsguard_restore_login_unix_socket are both set']),
    ({'opsguard_restore_login_host': 'db1'}, 'root',
     ['opsguard_restore_login_host=db1 logs in over TCP as opsguard_restore_login_user=root without opsguard_restore_login_password']),
    ({'opsguard_restore_login_host': 'db1', 'opsguard_restore_login_user': 'x', 'opsguard_restore_login_password': ''}, 'root',
     ['opsguard_restore_login_user=x without opsguard_restore_login_password']),
    ({'opsguard_restore_login_host': 'db1', 'opsguard_restore_login_user': 'x'}, '', ['without opsguard_restore_login_password']),
    ({'opsguard_restore_login_port': 3307}, 'root', ['opsguard_restore_login_port is set without opsguard_restore_login_host']),
    ({'opsguard_restore_login_port': 3307, 'opsguard_restore_login_host': ''}, None, ['login_port is set without']),
])
def test_contradicting_logins_are_one_sentence_each(values, default_user, words):
    problems = database_login_problems(values, P, default_user)
    assert len(problems) == 1, problems
    for word in words:
        assert word in problems[0]
    assert problems[0].endswith('.')


def test_password_is_never_shown():
    problems = database_login_problems({'opsguard_backup_login_host': 'db1', 'opsguard_backup_login_password': 'Secret-1',
                                        'opsguard_backup_login_unix_socket': '/s'}, 'opsguard_backup')
    assert problems and not any('Secret-1' in p for p in problems)


def test_no_default_user_means_the_instance_credentials_and_needs_no_password():
    assert database_login_problems({'opsguard_backup_login_host': 'db1'}, 'opsguard_backup', None) == []


@pytest.mark.parametrize('values, prefix', [('x', P), ({}, ''), ({}, None)])
def test_login_problems_refuse_wrong_arguments(values, prefix):
    with pytest.raises(AnsibleFilterError):
        database_login_problems(values, prefix)


def like(pattern: str, name: str) -> bool:
    """Whether a GRANT database pattern (``_`` and ``%`` wildcards, backslash escapes) matches ``name``."""
    regex = ''
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == '\\' and i + 1 < len(pattern):
            regex += re.escape(pattern[i + 1])
            i += 2
            continue
        regex += '.' if ch == '_' else '.*' if ch == '%' else re.escape(ch)
        i += 1
    return re.fullmatch(regex, name) is not None


INSTANCES = anqicms_instances([{'name': 'www', 'port': 8001, 'sites': [{'name': 'blog', 'server_name': 'blog.test'}]},
                               {'name': 'shop', 'port': 8002, 'database': 'x' * 60}])


def test_grants_cover_the_databases_restore_and_verify_create():
    grants = database_grants(INSTANCES)
    assert set(grants.values()) == {'ALL'}
    patterns = [key[:-2] for key in grants]
    assert all(key.endswith('.*') for key in grants)
    needed = ['anqicms_www', 'anqicms_www_blog', 'x' * 60, SCRATCH_PREFIX + '0123456789ab']
    for database in ['anqicms_www', 'anqicms_www_blog', 'x' * 60]:
        needed += [derived_name(database, 'new', 'abcd1234'), derived_name(database, 'old', 'abcd1234')]
    for name in needed:
        assert any(like(p, name) for p in patterns), name


@pytest.mark.parametrize('name', ['anqicmsXwww', 'anqicms_www2', 'anqicms_wwwXopsgXnewXt', 'anqicms_shop', 'mysql',
                                  'opsguardXverifyX1', 'anqicms_www_opsh_new_t', 'anqicms_ww'])
def test_grants_match_nothing_else(name):
    patterns = [key[:-2] for key in database_grants(INSTANCES)]
    assert not any(like(p, name) for p in patterns), name


def test_grants_without_verify_leave_out_the_scratch_databases():
    grants = database_grants(INSTANCES, False)
    assert not any(key.startswith('opsguard') for key in grants)
    assert grants['anqicms\\_www.*'] == 'ALL' and grants['anqicms\\_www\\_opsg\\_%.*'] == 'ALL'


@pytest.mark.parametrize('instances', ['www', [{'name': 'www'}], [{'name': 'www', 'databases': ['a.b']}],
                                       [{'name': 'www', 'databases': ['a`b']}], [{'name': 'w', 'databases': []}]])
def test_grants_refuse_what_they_cannot_name(instances):
    with pytest.raises(AnsibleFilterError):
        database_grants(instances)


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {'database_login_problems', 'database_grants'}


HOST_SPEC = {'opsguard_restore_login_host': {'type': 'host', 'allow_empty': True, 'default': ''},
             'opsguard_backup_host_name': {'type': 'host'}}


@pytest.mark.parametrize('value, expected', [
    ('10.0.0.11', '10.0.0.11'), ('db1', 'db1'), ('db-1.example.test', 'db-1.example.test'), ('db.example.test.', 'db.example.test.'),
    ('::1', '::1'), ('fd00:0::11', 'fd00::11'), ('', ''),
])
def test_host_inputs_that_a_client_can_connect_to(value, expected):
    assert playbook_input_problems({'opsguard_restore_login_host': value}, HOST_SPEC) == []
    assert playbook_inputs({'opsguard_restore_login_host': value}, HOST_SPEC)['opsguard_restore_login_host'] == expected


@pytest.mark.parametrize('name, value', [
    ('opsguard_restore_login_host', 'db host'), ('opsguard_restore_login_host', 'db;rm'), ('opsguard_restore_login_host', '-db'),
    ('opsguard_restore_login_host', 'db..x'), ('opsguard_restore_login_host', '999.1.1.1'), ('opsguard_restore_login_host', 3306),
    ('opsguard_restore_login_host', 'a' * 64), ('opsguard_restore_login_host', 'db\nx'), ('opsguard_backup_host_name', ''),
])
def test_host_inputs_refused_before_anything_runs(name, value):
    problems = playbook_input_problems({name: value}, HOST_SPEC)
    assert len(problems) == 1 and problems[0].startswith('%s must be a host name or an IP address, got ' % name), problems
