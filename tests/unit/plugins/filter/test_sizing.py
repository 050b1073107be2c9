# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters memory_budget, mariadb_sizing, mariadb_restart_for and mariadb_drop_ins (docs/roles/app.md, docs/roles/database.md).

Expected numbers are worked out by hand from those formulas (shown next to each case), not by the code under test.
"""

from __future__ import annotations

import math
import pathlib

import pytest
import yaml
from hypothesis import given, strategies as st

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.filter import sizing as F

MIB = 1048576
GIB = 1073741824
FILTER_DIR = pathlib.Path(F.__file__).parent
TWO = [{'name': 'site1', 'port': 8001}, {'name': 'site2', 'port': 8002, 'sites': [{'name': 'blog', 'server_name': 'b.test'}]}]


def test_the_filters_are_registered_under_their_names():
    assert F.FilterModule().filters() == {'memory_budget': F.memory_budget, 'mariadb_sizing': F.mariadb_sizing,
                                          'mariadb_restart_for': F.mariadb_restart_for, 'mariadb_live_changes': F.mariadb_live_changes,
                                          'mariadb_drop_ins': F.mariadb_drop_ins}


@pytest.mark.parametrize('name', ['memory_budget', 'mariadb_sizing', 'mariadb_restart_for', 'mariadb_live_changes',
                                  'mariadb_drop_ins'])
def test_each_filter_has_its_documentation(name):
    doc = yaml.safe_load((FILTER_DIR / (name + '.yml')).read_text(encoding='utf-8'))
    assert doc['DOCUMENTATION']['name'] == name and set(doc) == {'DOCUMENTATION', 'EXAMPLES', 'RETURN'}


# ----------------------------------------------------------------------------------------------- memory_budget

def test_the_documented_example_1_gib_two_instances_on_a_database_host():
    # reserve = max(256 MiB, int(1 GiB x 0.1) = 107374182) = 268435456; database = int(1 GiB x 0.35) = 375809638
    # apps = 1073741824 - 268435456 - 375809638 = 429496730; each = 429496730 // 2 = 214748365 -> 204 MiB
    # MemoryHigh = int(213909504 x 0.9) = 192518553 -> 183 MiB; GOMEMLIMIT = int(213909504 x 0.8) = 171127603 -> 163 MiB
    got = F.memory_budget(TWO, total_bytes=GIB, database_host=True)
    each = {'memory_max_bytes': 204 * MIB, 'memory_high_bytes': 183 * MIB, 'gomemlimit_bytes': 163 * MIB}
    assert got == {'total_bytes': GIB, 'source': 'app_memory_total_bytes', 'os_reserve_bytes': 268435456,
                   'database_bytes': 375809638, 'apps_bytes': 429496730, 'instance_min_bytes': 134217728,
                   'instances': {'site1': each, 'site2': each}, 'fits': True}


def test_a_host_outside_the_database_group_gives_the_database_nothing():
    # apps = 1 GiB - 256 MiB = 768 MiB; each 384 MiB; high int(402653184 x 0.9) = 362387865 -> 345 MiB;
    # GOMEMLIMIT int(402653184 x 0.8) = 322122547 -> 307 MiB
    got = F.memory_budget(TWO, total_bytes=GIB, database_host=False)
    assert (got['database_bytes'], got['apps_bytes']) == (0, 768 * MIB)
    assert got['instances']['site1'] == {'memory_max_bytes': 384 * MIB, 'memory_high_bytes': 345 * MIB, 'gomemlimit_bytes': 307 * MIB}


def test_explicit_limits_and_other_ratios():
    # total 3 GiB; reserve = max(256 MiB, int(3221225472 x 0.15) = 483183820) = 483183820
    # database = int(3221225472 x 0.35) = 1127428915; apps = 3221225472 - 483183820 - 1127428915 = 1610612737
    # a: 512 MiB given; b and c share (1610612737 - 536870912) // 2 = 536870912 (512 MiB)
    # high 0.85: int(536870912 x 0.85) = 456340275 -> 435 MiB; GOMEMLIMIT 0.7: int(375809638.4) -> 358 MiB
    instances = [{'name': 'a', 'memory_max_bytes': 512 * MIB}, {'name': 'b'}, {'name': 'c', 'memory_max_bytes': 0}]
    got = F.memory_budget(instances, total_bytes=3 * GIB, os_reserve_ratio=0.15, database_host=True,
                          high_ratio=0.85, gomemlimit_ratio=0.7)
    assert (got['os_reserve_bytes'], got['database_bytes'], got['apps_bytes']) == (483183820, 1127428915, 1610612737)
    for name in 'abc':
        assert got['instances'][name] == {'memory_max_bytes': 512 * MIB, 'memory_high_bytes': 435 * MIB,
                                          'gomemlimit_bytes': 358 * MIB}, name
    assert got['fits']


def test_given_reserve_and_database_are_used_as_they_are():
    # apps = 2 GiB - 100 MiB - 300 MiB = 1648 MiB, one instance takes it all
    got = F.memory_budget([{'name': 'a'}], total_bytes=2 * GIB, os_reserve_bytes=100 * MIB, database_bytes=300 * MIB,
                          database_host=True)
    assert (got['os_reserve_bytes'], got['database_bytes'], got['apps_bytes']) == (100 * MIB, 300 * MIB, 1648 * MIB)
    assert got['instances']['a']['memory_max_bytes'] == 1648 * MIB


def test_a_big_host_reserves_its_ratio():
    # 16 GiB x 0.1 = 1717986918.4 -> 1717986918 > 256 MiB
    assert F.memory_budget([{'name': 'a'}], total_bytes=16 * GIB)['os_reserve_bytes'] == 1717986918


def test_the_total_comes_from_memory_facts_with_its_source():
    facts = {'limit': {'bytes': 2 * GIB, 'source': 'cgroup v1'}}
    got = F.memory_budget([{'name': 'a'}], memory_facts=facts)
    assert (got['total_bytes'], got['source']) == (2 * GIB, 'cgroup v1')
    assert F.memory_budget([{'name': 'a'}], memory_facts={'limit': {'bytes': GIB}})['source'] == 'memory_facts'
    assert F.memory_budget([{'name': 'a'}], total_bytes=GIB, memory_facts=facts)['source'] == 'app_memory_total_bytes'


def test_extra_vars_given_as_strings_are_numbers():
    got = F.memory_budget(TWO, total_bytes=str(GIB), os_reserve_ratio='0.1', database_ratio='0.35', database_host='yes',
                          high_ratio='0.9', gomemlimit_ratio='0.8', instance_min_bytes='134217728')
    assert got == F.memory_budget(TWO, total_bytes=GIB, database_host=True)


def test_no_instances_leaves_the_apps_share_unassigned():
    got = F.memory_budget([], total_bytes=GIB)
    assert got['instances'] == {} and got['fits']


@pytest.mark.parametrize('instances, kwargs, why', [
    ([{'name': 'a', 'memory_max_bytes': 2 * GIB}, {'name': 'b'}], {}, 'the instances need more than apps'),
    ([{'name': str(n)} for n in range(8)], {}, 'each share (96 MiB) is below the 128 MiB minimum'),
    ([{'name': 'a'}], {'total_bytes': 0}, 'no memory'),
    ([{'name': 'a'}], {'os_reserve_bytes': GIB}, 'apps would be 0'),
    ([{'name': 'a'}], {'database_ratio': 1}, 'apps below 0'),
    ([{'name': 'a'}], {'gomemlimit_ratio': 0.9}, 'GOMEMLIMIT not below MemoryHigh'),
    ([{'name': 'a'}], {'gomemlimit_ratio': 0.95}, 'GOMEMLIMIT above MemoryHigh'),
])
def test_a_budget_that_does_not_fit_says_so_with_its_numbers(instances, kwargs, why):
    args = dict({'total_bytes': GIB, 'database_host': True}, **kwargs)
    got = F.memory_budget(instances, **args)
    assert got['fits'] is False, why
    assert got['total_bytes'] == args['total_bytes']


@pytest.mark.parametrize('kwargs, message', [
    ({'total_bytes': '1G'}, "app_memory_total_bytes='1G' is not a whole number of bytes"),
    ({'total_bytes': -1}, 'app_memory_total_bytes=-1 is not a whole number'),
    ({'total_bytes': 1.5}, 'app_memory_total_bytes=1.5'),
    ({'total_bytes': True}, 'app_memory_total_bytes=True'),
    ({'total_bytes': 2 ** 80}, 'app_memory_total_bytes=%d' % 2 ** 80),
    ({'total_bytes': math.inf}, 'app_memory_total_bytes=inf'),
    ({'total_bytes': None}, 'app_memory_total_bytes is not set and no memory facts with limit.bytes were given'),
    ({'total_bytes': None, 'memory_facts': {'limit': {}}}, 'run opsguard.anqicms.memory_facts first'),
    ({'total_bytes': None, 'memory_facts': {'limit': {'bytes': 'lots'}}}, "opsguard_memory.limit.bytes='lots'"),
    ({'os_reserve_ratio': 'abc'}, "app_memory_os_reserve_ratio='abc' is not a number from 0 to 1"),
    ({'os_reserve_ratio': 1.5}, 'app_memory_os_reserve_ratio=1.5 is not a number from 0 to 1'),
    ({'database_ratio': -0.1}, 'app_memory_database_ratio=-0.1'),
    ({'high_ratio': math.nan}, 'app_memory_high_ratio=nan'),
    ({'gomemlimit_ratio': True}, 'app_gomemlimit_ratio=True'),
    ({'os_reserve_min_bytes': None}, 'app_memory_os_reserve_min_bytes=None'),
    ({'os_reserve_bytes': 'x'}, "app_memory_os_reserve_bytes='x'"),
    ({'database_bytes': -5}, 'app_memory_database_bytes=-5'),
    ({'instance_min_bytes': [1]}, 'app_memory_instance_min_bytes=[1]'),
    ({'database_host': 'maybe'}, "database_host='maybe' is not true or false"),
])
def test_a_bad_setting_is_refused_naming_it(kwargs, message):
    args = dict({'total_bytes': GIB}, **kwargs)
    with pytest.raises(AnsibleFilterError) as err:
        F.memory_budget(TWO, **args)
    assert message in str(err.value)


@pytest.mark.parametrize('instances, message', [
    ([{'name': 'a', 'memory_max_bytes': '512M'}], "app_instances a memory_max_bytes='512M' is not a whole number of bytes"),
    ([{'name': 'a', 'memory_max_bytes': -1}], 'app_instances a memory_max_bytes=-1'),
    ([{'name': 'A'}], "app_instances item 1: name='A'"),
    ('a', 'app_instances must be a list'),
])
def test_a_bad_instance_is_refused_naming_it(instances, message):
    with pytest.raises(AnsibleFilterError) as err:
        F.memory_budget(instances, total_bytes=GIB)
    assert message in str(err.value)


# ----------------------------------------------------------------------------------------------- mariadb_sizing

PER_CONNECTION = 262144 + 262144 + 131072 + 262144 + 299008 + 32768   # 1249280


def test_the_documented_example_1_gib_three_sites():
    # sites 3 -> 3 x 20 x 1 + 20 = 80; pool = 375809638 - 100663296 - 80 x 1249280 = 175203942 -> 2 x 64 MiB
    budget = {'total_bytes': GIB, 'database_bytes': 375809638}
    got = F.mariadb_sizing(TWO, budget=budget)
    assert got == {'sites': 3, 'needed_connections': 80, 'max_connections': 80, 'memory_bytes': 375809638,
                   'per_connection_bytes': PER_CONNECTION, 'innodb_buffer_pool_size': 128 * MIB,
                   'performance_schema': False, 'fits': True}


def test_replicas_extra_sites_and_given_memory():
    # sites 1 + (1 + 2) + 1 = 5 -> 5 x 20 x 2 + 20 = 220; pool = 805306368 - 100663296 - 220 x 1249280 = 429801472 -> 6 x 64 MiB
    instances = [{'name': 'a'}, {'name': 'b', 'sites': [{'name': 'x', 'server_name': 'x.t'}, {'name': 'y', 'server_name': 'y.t'}]},
                 {'name': 'c'}]
    got = F.mariadb_sizing(instances, app_replicas=2, memory_bytes=768 * MIB, performance_schema=True)
    assert (got['sites'], got['needed_connections'], got['max_connections']) == (5, 220, 220)
    assert got['innodb_buffer_pool_size'] == 384 * MIB and got['performance_schema'] is True and got['fits']


def test_given_memory_wins_over_the_budget():
    got = F.mariadb_sizing(TWO, memory_bytes=512 * MIB, budget={'total_bytes': GIB, 'database_bytes': 1})
    # 536870912 - 100663296 - 99942400 = 336265216 -> 5 x 64 MiB
    assert got['memory_bytes'] == 512 * MIB and got['innodb_buffer_pool_size'] == 320 * MIB


@pytest.mark.parametrize('total, given, expected', [
    (4 * GIB, None, True),          # exactly database_small_host_bytes
    (4 * GIB - 1, None, False),
    (8 * GIB, False, False),
    (GIB, 'on', True),
    (GIB, 'no', False),
])
def test_performance_schema(total, given, expected):
    got = F.mariadb_sizing(TWO, budget={'total_bytes': total, 'database_bytes': 512 * MIB}, performance_schema=given)
    assert got['performance_schema'] is expected


def test_without_a_budget_the_host_counts_as_small():
    assert F.mariadb_sizing(TWO, memory_bytes=GIB)['performance_schema'] is False


@pytest.mark.parametrize('kwargs, expected', [
    # max_connections 50 < 80 needed; pool 375809638 - 100663296 - 50 x 1249280 = 212682342 -> 3 x 64 MiB
    ({'max_connections': 50}, {'max_connections': 50, 'needed_connections': 80, 'innodb_buffer_pool_size': 192 * MIB}),
    # 150 MiB - 96 MiB - 80 x 1249280 < 0 -> 0
    ({'memory_bytes': 150 * MIB}, {'innodb_buffer_pool_size': 0}),
    # 128 MiB pool below a 192 MiB minimum
    ({'buffer_pool_min_bytes': 192 * MIB}, {'innodb_buffer_pool_size': 128 * MIB}),
])
def test_sizing_that_does_not_fit_says_so(kwargs, expected):
    got = F.mariadb_sizing(TWO, budget={'total_bytes': GIB, 'database_bytes': 375809638}, **kwargs)
    assert got['fits'] is False
    assert {key: got[key] for key in expected} == expected


def test_more_max_connections_than_needed_fits_with_a_smaller_pool():
    # 375809638 - 100663296 - 100 x 1249280 = 150218342 -> 2 x 64 MiB
    got = F.mariadb_sizing(TWO, budget={'total_bytes': GIB, 'database_bytes': 375809638}, max_connections='100')
    assert (got['max_connections'], got['innodb_buffer_pool_size'], got['fits']) == (100, 128 * MIB, True)


@pytest.mark.parametrize('kwargs, message', [
    ({}, 'database_memory_bytes is not set and no app_budget with database_bytes was given'),
    ({'budget': {'total_bytes': GIB}}, 'database_memory_bytes is not set'),
    ({'memory_bytes': '1G'}, "database_memory_bytes='1G' is not a whole number of bytes"),
    ({'budget': {'total_bytes': GIB, 'database_bytes': -1}}, 'app_budget.database_bytes=-1'),
    ({'memory_bytes': GIB, 'budget': {'total_bytes': 'x'}}, "app_budget.total_bytes='x'"),
    ({'memory_bytes': GIB, 'pool_per_site': 0.5}, 'database_pool_per_site=0.5 is not a whole number of connections'),
    ({'memory_bytes': GIB, 'app_replicas': -1}, 'database_app_replicas=-1 is not a whole number of processes'),
    ({'memory_bytes': GIB, 'connection_headroom': 'many'}, "database_connection_headroom='many'"),
    ({'memory_bytes': GIB, 'max_connections': 10 ** 9}, 'database_max_connections=1000000000'),
    ({'memory_bytes': GIB, 'base_bytes': None}, 'database_base_bytes=None'),
    ({'memory_bytes': GIB, 'sort_buffer_size': '256K'}, "database_sort_buffer_size='256K'"),
    ({'memory_bytes': GIB, 'thread_stack_bytes': True}, 'database_thread_stack_bytes=True'),
    ({'memory_bytes': GIB, 'performance_schema': 'maybe'}, "database_performance_schema='maybe' is not true or false"),
    ({'memory_bytes': GIB, 'small_host_bytes': math.nan}, 'database_small_host_bytes=nan'),
])
def test_a_bad_database_setting_is_refused_naming_it(kwargs, message):
    with pytest.raises(AnsibleFilterError) as err:
        F.mariadb_sizing(TWO, **kwargs)
    assert message in str(err.value)


def test_a_bad_database_instance_is_refused_naming_the_list():
    with pytest.raises(AnsibleFilterError, match=r"^database_instances item 1: name=None"):
        F.mariadb_sizing([{'db_password': 'x'}], memory_bytes=GIB)


# ----------------------------------------------------------------------------------------------- mariadb_restart_for

ROWS = [{'Variable_name': 'performance_schema', 'Value': 'OFF'}, {'Variable_name': 'thread_stack', 'Value': '299008'}]


@pytest.mark.parametrize('settings, live, expected', [
    ({'performance_schema': 'OFF', 'thread_stack': 299008}, ROWS, []),
    ({'performance_schema': 'off', 'thread_stack': '299008'}, ROWS, []),                      # case and type do not matter
    ({'performance_schema': 'ON', 'thread_stack': 299008}, ROWS, ['performance_schema: OFF -> ON']),
    ({'performance_schema': 'ON', 'thread_stack': 524288}, ROWS, ['performance_schema: OFF -> ON', 'thread_stack: 299008 -> 524288']),
    ({'performance_schema': 'OFF', 'innodb_log_file_size': 1}, ROWS, ['innodb_log_file_size: unset -> 1']),
    ({'performance_schema': 'OFF'}, {'performance_schema': 'OFF'}, []),
    ({'performance_schema': 'OFF'}, [], ['performance_schema: unset -> OFF']),
    ({}, ROWS, []),
])
def test_only_settings_whose_live_value_differs_need_a_restart(settings, live, expected):
    assert F.mariadb_restart_for(settings, live) == expected


@pytest.mark.parametrize('settings, live, message', [
    (['performance_schema'], ROWS, 'mariadb_restart_for needs a dict of settings'),
    ({'thread_stack': 1}, 'thread_stack=1', 'the live values must be the rows of SHOW GLOBAL VARIABLES'),
    ({'thread_stack': 1}, [{'Value': 1}], 'the live values must be the rows'),
])
def test_a_wrong_call_is_refused(settings, live, message):
    with pytest.raises(AnsibleFilterError, match=message):
        F.mariadb_restart_for(settings, live)


# ----------------------------------------------------------------------------------------------- mariadb_live_changes

LIVE = [{'Variable_name': 'max_connections', 'Value': '80'}, {'Variable_name': 'sort_buffer_size', 'Value': '262144'},
        {'Variable_name': 'performance_schema', 'Value': 'OFF'}]


@pytest.mark.parametrize('settings, live, expected', [
    ({'max_connections': 80, 'sort_buffer_size': '262144'}, LIVE, {}),
    ({'max_connections': 120, 'sort_buffer_size': 262144}, LIVE, {'max_connections': 120}),
    ({'max_connections': 80, 'innodb_buffer_pool_size': 134217728}, LIVE, {'innodb_buffer_pool_size': 134217728}),  # not reported
    ({'slow_query_log': True}, {'slow_query_log': 'ON'}, {'slow_query_log': True}),        # another spelling: set it again
    ({'init_connect': ''}, [], {'init_connect': ''}),                                        # not reported: set it
    ({'x': 'None'}, [{'Variable_name': 'x', 'Value': None}], {'x': 'None'}),                # NULL is no value
    ({'x': 'straße'}, {'x': 'STRASSE'}, {'x': 'straße'}),                                   # only ASCII case is ignored
    ({'x': 'ıd'}, {'x': 'id'}, {'x': 'ıd'}),
    ({'max_connections': 80}, [], {'max_connections': 80}),
    ({}, LIVE, {}),
])
def test_only_settings_whose_live_value_differs_are_set_live(settings, live, expected):
    assert F.mariadb_live_changes(settings, live) == expected


def test_a_value_too_long_to_print_differs_instead_of_failing():
    huge = 10 ** 5000
    assert F.mariadb_live_changes({'x': huge}, {'x': '1'}) == {'x': huge}
    assert F.mariadb_restart_for({'x': 1}, {'x': huge})[0].startswith('x: None -> 1')


@pytest.mark.parametrize('settings, live, message', [
    (['max_connections'], LIVE, 'mariadb_live_changes needs a dict of settings'),
    ({'max_connections': 1}, 'max_connections=1', 'mariadb_live_changes: the live values must be the rows'),
    ({'max_connections': 1}, [{'Value': 1}], 'mariadb_live_changes: the live values must be the rows'),
    ({'max_connections': 1}, None, 'mariadb_live_changes: the live values must be the rows'),
    ({'max_connections': 1}, [{'Variable_name': ['x'], 'Value': 1}], 'mariadb_live_changes: the live values must be the rows'),
])
def test_a_wrong_live_changes_call_is_refused(settings, live, message):
    with pytest.raises(AnsibleFilterError, match=message):
        F.mariadb_live_changes(settings, live)


@given(settings=st.dictionaries(st.sampled_from(['a', 'b', 'c', 'd']), st.integers(0, 3) | st.sampled_from(['ON', 'off'])),
       live=st.dictionaries(st.sampled_from(['a', 'b', 'c', 'e']), st.integers(0, 3) | st.sampled_from(['on', 'OFF'])))
def test_live_changes_are_the_settings_restart_for_would_name(settings, live):
    changes = F.mariadb_live_changes(settings, live)
    assert [line.split(':')[0] for line in F.mariadb_restart_for(settings, live)] == list(changes)
    assert all(settings[name] == value for name, value in changes.items())


# ----------------------------------------------------------------------------------------------- mariadb_drop_ins

DYNAMIC = {'max_connections': 80, 'innodb_buffer_pool_size': 134217728, 'sort_buffer_size': 262144}
STATIC = {'performance_schema': 'OFF', 'thread_stack': 299008}
SIZED_PATH = '/etc/mysql/mariadb.conf.d/60-anqicms.cnf'
EXTRA_PATH = '/etc/mysql/mariadb.conf.d/61-anqicms-extra.cnf'


def test_without_extra_settings_everything_stays_in_the_sized_drop_in():
    got = F.mariadb_drop_ins({}, dynamic=DYNAMIC, static=STATIC, config_path=SIZED_PATH, extra_config_path=EXTRA_PATH)
    assert got == {'sized': dict(DYNAMIC, **STATIC), 'dynamic': DYNAMIC, 'static': STATIC, 'extra': {}, 'replaced': []}
    assert list(got['sized']) == sorted(got['sized'])
    assert F.mariadb_drop_ins(None) == {'sized': {}, 'dynamic': {}, 'static': {}, 'extra': {}, 'replaced': []}


def test_an_extra_setting_replaces_the_sized_one_whatever_its_spelling():
    extra = {'bind-address': '0.0.0.0', 'Max-Connections': 200, 'THREAD_STACK': 524288}
    got = F.mariadb_drop_ins(extra, dynamic=DYNAMIC, static=STATIC)
    assert got['extra'] == {'Max-Connections': '200', 'THREAD_STACK': '524288', 'bind-address': '0.0.0.0'}
    assert got['dynamic'] == {'innodb_buffer_pool_size': 134217728, 'sort_buffer_size': 262144}
    assert got['static'] == {'performance_schema': 'OFF'}
    assert got['sized'] == {'innodb_buffer_pool_size': 134217728, 'performance_schema': 'OFF', 'sort_buffer_size': 262144}
    assert got['replaced'] == ['max_connections', 'thread_stack']
    assert DYNAMIC['max_connections'] == 80 and 'thread_stack' in STATIC, 'the input was modified'


@pytest.mark.parametrize('value, written', [
    ('0.0.0.0', '0.0.0.0'),
    ('/var/log/mysql/error log.err', '/var/log/mysql/error log.err'),     # inner blanks need no quotes
    ("SET NAMES utf8mb4 # app", '"SET NAMES utf8mb4 # app"'),               # bare, '#' would start a comment
    ("SET a='x'", '"SET a=\'x\'"'),
    ('C:\\tmp "x"', '"C:\\\\tmp \\"x\\""'),
    (' lead', '" lead"'),
    ('trail ', '"trail "'),
    ('', '""'),
    ('[x]', '[x]'),
    ('Zürich', 'Zürich'),
    (True, 'ON'),
    (False, 'OFF'),
    (0, '0'),
    (12345678901234567890, '12345678901234567890'),
    (0.5, '0.5'),
])
def test_values_are_written_so_that_mariadb_reads_them_back(value, written):
    assert F.mariadb_drop_ins({'init_connect': value})['extra'] == {'init_connect': written}


@pytest.mark.parametrize('extra, message', [
    ('bind-address=0.0.0.0', 'database_extra_settings must be a dict of [mysqld] settings (name: value), got str'),
    (['bind-address'], 'got list'),
    ({'bind-address=1': 'x'}, "database_extra_settings: 'bind-address=1' is not a MariaDB option name"),
    ({'[client]': 'x'}, "'[client]' is not a MariaDB option name"),
    ({'a\nb': 'x'}, "'a\\nb' is not a MariaDB option name"),
    ({'a\x00': 'x'}, "'a\\x00' is not a MariaDB option name"),
    ({'bind address': 'x'}, "'bind address' is not a MariaDB option name"),
    ({'#x': 'x'}, "'#x' is not a MariaDB option name"),
    ({'!include': '/etc/x'}, "'!include' is not a MariaDB option name"),
    ({'-x': 'x'}, "'-x' is not a MariaDB option name"),
    ({'': 'x'}, "'' is not a MariaDB option name"),
    ({5: 'x'}, '5 is not a MariaDB option name'),
    ({'bind-address': '0.0.0.0', 'Bind_Address': '::'}, "names 'Bind_Address' and 'bind-address': MariaDB reads both as bind_address"),
    ({'x': 'a\nskip-grant-tables'}, "database_extra_settings x='a\\nskip-grant-tables' holds a newline, tab, NUL"),
    ({'x': 'a\rb'}, 'holds a newline, tab, NUL'),
    ({'x': 'a\x00b'}, 'holds a newline, tab, NUL'),
    ({'x': 'a\tb'}, 'holds a newline, tab, NUL'),
    ({'x': '\x7f'}, 'holds a newline, tab, NUL'),
    ({'x': '\u2028'}, 'holds a newline, tab, NUL'),
    ({'x': None}, 'database_extra_settings x=None is not a string, number or true/false'),
    ({'x': [1]}, 'x=[1] is not a string'),
    ({'x': {'a': 1}}, "x={'a': 1} is not a string"),
    ({'x': math.inf}, 'database_extra_settings x=inf is not a finite number'),
    ({'x': math.nan}, 'x=nan is not a finite number'),
    ({'x': 'y' * 3997}, 'database_extra_settings x: its line in the option file would be 4001 bytes; MariaDB reads at most 4000'),
])
def test_a_bad_extra_setting_is_refused_naming_it(extra, message):
    with pytest.raises(AnsibleFilterError) as err:
        F.mariadb_drop_ins(extra, dynamic=DYNAMIC, static=STATIC)
    assert message in str(err.value)


def test_the_longest_line_mariadb_reads_is_accepted():
    assert len(F.mariadb_drop_ins({'x': 'y' * 3996})['extra']['x']) == 3996


@pytest.mark.parametrize('config_path, extra_config_path, message', [
    (SIZED_PATH, SIZED_PATH, 'is read before (or is) database_config_path'),
    (SIZED_PATH, '/etc/mysql/mariadb.conf.d/59-extra.cnf', "a name that sorts after '60-anqicms.cnf'"),
    (SIZED_PATH, '/etc/mysql/mariadb.conf.d/60-ANQICMS.cnf', 'is read before'),     # byte order: 'A' < 'a'
    (SIZED_PATH, '/etc/mysql/mariadb.conf.d/61-extra.conf',
     "database_extra_config_path='/etc/mysql/mariadb.conf.d/61-extra.conf' is not an absolute path of a .cnf file"),
    (SIZED_PATH, 'mariadb.conf.d/61-extra.cnf', 'is not an absolute path'),
    ('60-anqicms.cnf', EXTRA_PATH, "database_config_path='60-anqicms.cnf' is not an absolute path"),
    (SIZED_PATH, 7, 'database_extra_config_path=7'),
])
def test_an_extra_drop_in_mariadb_would_not_read_last_is_refused(config_path, extra_config_path, message):
    with pytest.raises(AnsibleFilterError) as err:
        F.mariadb_drop_ins({}, config_path=config_path, extra_config_path=extra_config_path)
    assert message in str(err.value)


@pytest.mark.parametrize('config_path, extra_config_path', [
    (SIZED_PATH, EXTRA_PATH),
    (SIZED_PATH, '/etc/mysql/mariadb.conf.d/60-anqicms.cnf.cnf'),
    (SIZED_PATH, '/etc/mysql/conf.d/99-extra.cnf'),         # another directory: the operator orders the directories
])
def test_an_extra_drop_in_read_after_the_sized_one_is_accepted(config_path, extra_config_path):
    assert F.mariadb_drop_ins({'a': 1}, config_path=config_path, extra_config_path=extra_config_path)['extra'] == {'a': '1'}


@pytest.mark.parametrize('dynamic, static, message', [
    ([('a', 1)], {}, 'mariadb_drop_ins: dynamic must be a dict of settings'),
    ({}, 'thread_stack', 'mariadb_drop_ins: static must be a dict of settings'),
])
def test_a_wrong_call_of_mariadb_drop_ins_is_refused(dynamic, static, message):
    with pytest.raises(AnsibleFilterError, match=message):
        F.mariadb_drop_ins({}, dynamic=dynamic, static=static)


# Properties: any printable value reads back as it is; anything else a name or a value may hold is refused.

NAMES = st.from_regex(r'\A[A-Za-z][A-Za-z0-9_.-]{0,30}\Z')


def read_back(written: str) -> str:
    """MariaDB's option-file reading of a value (mysys/my_default.c): quotes stripped, escapes undone."""
    if len(written) >= 2 and written[0] == written[-1] == '"':
        inner, out, i = written[1:-1], [], 0
        while i < len(inner):
            if inner[i] == '\\':
                out.append(inner[i + 1])
                i += 2
            else:
                out.append(inner[i])
                i += 1
        return ''.join(out)
    return written


@given(name=NAMES, value=st.text(st.characters(exclude_categories=('Cc', 'Cs', 'Zl', 'Zp', 'Cn', 'Co', 'Cf', 'Zs'))
                                 | st.sampled_from(' #"\'\\[]='), max_size=60))
def test_property_any_printable_value_reads_back_as_it_is(name, value):
    written = F.mariadb_drop_ins({name: value})['extra'][name]
    assert read_back(written) == value
    bare = written == value
    assert not bare or not any(c in value for c in '#"\'\\'), written
    assert not bare or value == value.strip() != ''
    assert '\n' not in written and '\r' not in written


@given(name=NAMES, value=st.one_of(st.integers(), st.booleans(),
                                   st.floats(allow_nan=False, allow_infinity=False)))
def test_property_numbers_and_flags_are_written_bare(name, value):
    written = F.mariadb_drop_ins({name: value})['extra'][name]
    assert written == ({True: 'ON', False: 'OFF'}[value] if isinstance(value, bool) else repr(value))


@given(prefix=st.text(max_size=5), bad=st.characters(exclude_characters='abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-'),
       suffix=st.text(max_size=5))
def test_property_a_name_with_any_other_character_is_refused(prefix, bad, suffix):
    name = 'a' + prefix + bad + suffix
    with pytest.raises(AnsibleFilterError, match='is not a MariaDB option name'):
        F.mariadb_drop_ins({name: '1'})


@given(name=NAMES, left=st.text(max_size=10), bad=st.characters(categories=('Cc', 'Zl', 'Zp')), right=st.text(max_size=10))
def test_property_a_value_with_a_control_character_is_refused(name, left, bad, right):
    with pytest.raises(AnsibleFilterError, match='holds a newline, tab, NUL or another control character'):
        F.mariadb_drop_ins({name: left + bad + right})


@given(chosen=st.sets(st.sampled_from(sorted(dict(DYNAMIC, **STATIC))), max_size=5),
       spelling=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=5, max_size=5))
def test_property_each_setting_is_in_exactly_one_drop_in(chosen, spelling):
    extra = {}
    for name, (upper, dash) in zip(sorted(chosen), spelling):
        extra[(name.upper() if upper else name).replace('_', '-' if dash else '_')] = 1
    got = F.mariadb_drop_ins(extra, dynamic=DYNAMIC, static=STATIC)
    assert set(got['sized']) | set(got['replaced']) == set(DYNAMIC) | set(STATIC)
    assert set(got['sized']).isdisjoint(got['replaced']) and set(got['replaced']) == chosen
    assert set(got['dynamic']) <= set(DYNAMIC) and set(got['static']) <= set(STATIC)
    assert set(got['dynamic']) | set(got['static']) == set(got['sized'])
