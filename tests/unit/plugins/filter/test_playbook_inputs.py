"""Unit tests of the playbook_input_problems / playbook_inputs filters."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.filter.playbook_inputs import (
    FilterModule, MAX_DEFAULT, playbook_input_problems, playbook_inputs)

SPEC = {
    'opsguard_target': {'type': 'str', 'default': 'app', 'renamed_from': 'target'},
    'opsguard_min_healthy': {'type': 'count_or_percent', 'default': 1, 'renamed_from': 'min_healthy'},
    'opsguard_max_parallel': {'type': 'int', 'min': 1, 'max': 100, 'default': 1, 'renamed_from': 'max_parallel'},
    'opsguard_stop_timeout': {'type': 'float', 'max': 3600, 'default': 30},
    'opsguard_backup': {'type': 'bool', 'default': False},
    'opsguard_fail_on': {'type': 'str', 'choices': ['critical', 'warning', 'never'], 'default': 'critical'},
    'opsguard_stop_instances': {'type': 'host_instance_list', 'default': []},
    'opsguard_report_dir': {'type': 'path', 'default': './reports'},
    'opsguard_backup_dest': {'type': 'path', 'absolute': True, 'default': '/var/backups/anqicms'},
    'opsguard_restore': {'type': 'backup_id', 'choices': ['none'], 'default': 'none'},
    'opsguard_memory_facts_options': {'type': 'dict', 'default': {}},
    'opsguard_login_password': {'type': 'str', 'secret': True, 'allow_empty': True},
    'opsguard_hosts': {'type': 'list', 'default': []},
}


def test_nothing_given_is_fine_and_gives_the_defaults():
    assert playbook_input_problems({}, SPEC) == []
    values = playbook_inputs({}, SPEC)
    assert values == {name: rule.get('default') for name, rule in SPEC.items()}


@pytest.mark.parametrize('value', [None, '__omit_place_holder__0123abcd'])
def test_null_and_omit_count_as_not_given(value):
    assert playbook_input_problems({'opsguard_max_parallel': value}, SPEC) == []
    assert playbook_inputs({'opsguard_max_parallel': value}, SPEC)['opsguard_max_parallel'] == 1


@pytest.mark.parametrize('name, value, expected', [
    ('opsguard_min_healthy', '50%', '50%'),
    ('opsguard_min_healthy', ' 0% ', '0%'),
    ('opsguard_min_healthy', '100%', '100%'),
    ('opsguard_min_healthy', '2', 2),
    ('opsguard_min_healthy', 0, 0),
    ('opsguard_min_healthy', 3.0, 3),
    ('opsguard_max_parallel', '7', 7),
    ('opsguard_max_parallel', 100, 100),
    ('opsguard_stop_timeout', '2.5', 2.5),
    ('opsguard_stop_timeout', 0, 0),
    ('opsguard_backup', 'yes', True),
    ('opsguard_backup', 'False', False),
    ('opsguard_backup', 1, True),
    ('opsguard_backup', True, True),
    ('opsguard_fail_on', 'warning', 'warning'),
    ('opsguard_stop_instances', 'node2:site1', ['node2:site1']),
    ('opsguard_stop_instances', 'node2:site1, node3:/opt/other/x', ['node2:site1', 'node3:/opt/other/x']),
    ('opsguard_stop_instances', ['node1:a-b_c'], ['node1:a-b_c']),
    ('opsguard_stop_instances', [], []),
    ('opsguard_report_dir', 'out/reports', 'out/reports'),
    ('opsguard_backup_dest', '/srv/b', '/srv/b'),
    ('opsguard_restore', 'latest', 'latest'),
    ('opsguard_restore', 'none', 'none'),
    ('opsguard_restore', '20260102T030405Z', '20260102T030405Z'),
    ('opsguard_restore', '20260102T030405123456Z', '20260102T030405123456Z'),
    ('opsguard_memory_facts_options', {'warning_available_percent': 20}, {'warning_available_percent': 20}),
    ('opsguard_login_password', '', ''),
    ('opsguard_hosts', 'a,b,,c', ['a', 'b', 'c']),
])
def test_good_values_are_converted(name, value, expected):
    assert playbook_input_problems({name: value}, SPEC) == []
    converted = playbook_inputs({name: value}, SPEC)[name]
    assert converted == expected
    assert type(converted) is type(expected)


@pytest.mark.parametrize('name, value, words', [
    ('opsguard_min_healthy', 'abc', ["opsguard_min_healthy must be a count", "percentage", "'abc'"]),
    ('opsguard_min_healthy', '150%', ["opsguard_min_healthy", "'150%'"]),
    ('opsguard_min_healthy', '-1', ["opsguard_min_healthy", "'-1'"]),
    ('opsguard_min_healthy', '50.5%', ["opsguard_min_healthy", "'50.5%'"]),
    ('opsguard_min_healthy', True, ["opsguard_min_healthy", "true (a boolean)"]),
    ('opsguard_min_healthy', float('nan'), ["opsguard_min_healthy", "nan"]),
    ('opsguard_max_parallel', 0, ["opsguard_max_parallel must be a whole number from 1 to 100, got 0."]),
    ('opsguard_max_parallel', '0', ["opsguard_max_parallel must be a whole number from 1 to 100, got '0'."]),
    ('opsguard_max_parallel', 'x', ["opsguard_max_parallel must be a whole number from 1 to 100, got 'x'."]),
    ('opsguard_max_parallel', 2.5, ["opsguard_max_parallel", "2.5"]),
    ('opsguard_max_parallel', False, ["opsguard_max_parallel", "false (a boolean)"]),
    ('opsguard_max_parallel', 101, ["opsguard_max_parallel", "101"]),
    ('opsguard_max_parallel', [1], ["opsguard_max_parallel", "[1] (a list)"]),
    ('opsguard_stop_timeout', 'inf', ["opsguard_stop_timeout must be a number from 0 to 3600, got 'inf'."]),
    ('opsguard_stop_timeout', float('-inf'), ["opsguard_stop_timeout", "-inf"]),
    ('opsguard_stop_timeout', 'NaN', ["opsguard_stop_timeout", "'NaN'"]),
    ('opsguard_stop_timeout', '1e999', ["opsguard_stop_timeout", "'1e999'"]),
    ('opsguard_stop_timeout', -1, ["opsguard_stop_timeout", "-1"]),
    ('opsguard_stop_timeout', '1_0', ["opsguard_stop_timeout", "'1_0'"]),
    ('opsguard_max_parallel', '\u0663', ["opsguard_max_parallel", "'\u0663'"]),
    ('opsguard_backup', 'maybe', ["opsguard_backup must be true or false, got 'maybe'."]),
    ('opsguard_backup', 2, ["opsguard_backup must be true or false, got 2."]),
    ('opsguard_fail_on', 'sometimes', ["opsguard_fail_on must be one of critical, warning, never, got 'sometimes'."]),
    ('opsguard_fail_on', 2, ["opsguard_fail_on must be one of", "got 2."]),
    ('opsguard_target', '', ["opsguard_target must not be empty, got ''."]),
    ('opsguard_target', 5, ["opsguard_target must be a string, got 5."]),
    ('opsguard_stop_instances', 'node2', ['opsguard_stop_instances entries must be "host:instance"', "'node2'"]),
    ('opsguard_stop_instances', ['node2:'], ['opsguard_stop_instances', "'node2:'"]),
    ('opsguard_stop_instances', [':site1'], ['opsguard_stop_instances', "':site1'"]),
    ('opsguard_stop_instances', ['node2:Site One'], ['opsguard_stop_instances', "'node2:Site One'"]),
    ('opsguard_stop_instances', [3], ['opsguard_stop_instances must be a list of non-empty strings', '3']),
    ('opsguard_stop_instances', {'a': 1}, ['opsguard_stop_instances must be a list', '(a dict)']),
    ('opsguard_report_dir', '', ["opsguard_report_dir must be a path, got ''."]),
    ('opsguard_report_dir', 'a\x00b', ["opsguard_report_dir must be a path without NUL"]),
    ('opsguard_backup_dest', 'relative', ["opsguard_backup_dest must be an absolute path", "'relative'"]),
    ('opsguard_restore', 'yesterday', ["opsguard_restore must be 'latest', 'none' or a backup id", "'yesterday'"]),
    ('opsguard_memory_facts_options', 'x=1', ["opsguard_memory_facts_options must be a dict, got 'x=1'."]),
])
def test_bad_values_get_one_sentence_naming_variable_and_value(name, value, words):
    problems = playbook_input_problems({name: value}, SPEC)
    assert len(problems) == 1
    for word in words:
        assert word in problems[0]
    assert problems[0].endswith('.')
    with pytest.raises(AnsibleFilterError) as err:
        playbook_inputs({name: value}, SPEC)
    assert problems[0] in str(err.value)


def test_secret_values_are_never_shown():
    problems = playbook_input_problems({'opsguard_login_password': ['s3cr3t']}, SPEC)
    assert problems == ['opsguard_login_password must be a string, got a value of type list (not shown).']
    assert 's3cr3t' not in problems[0]


@pytest.mark.parametrize('old, new', [('min_healthy', 'opsguard_min_healthy'), ('target', 'opsguard_target'),
                                      ('max_parallel', 'opsguard_max_parallel')])
def test_old_names_are_refused(old, new):
    assert playbook_input_problems({old: '2'}, SPEC) == ['%s was renamed %s.' % (old, new)]


def test_renamed_mapping_argument():
    spec = {'opsguard_batch': {'type': 'int', 'min': 1}}
    assert playbook_input_problems({'batch': 2}, spec, {'batch': 'opsguard_batch'}) == ['batch was renamed opsguard_batch.']
    assert playbook_input_problems({'batch': None, 'opsguard_batch': 2}, spec, {'batch': 'opsguard_batch'}) == []
    assert FilterModule().filters()['playbook_inputs']({'opsguard_batch': '3'}, spec) == {'opsguard_batch': 3}


def test_several_problems_are_all_reported_in_order():
    problems = playbook_input_problems({'min_healthy': 2, 'opsguard_max_parallel': 0, 'opsguard_fail_on': 'x'}, SPEC)
    assert problems[0] == 'min_healthy was renamed opsguard_min_healthy.'
    assert [p.split()[0] for p in problems[1:]] == ['opsguard_max_parallel', 'opsguard_fail_on']


def test_required():
    spec = {'opsguard_x': {'type': 'int', 'required': True}}
    assert playbook_input_problems({}, spec) == ['opsguard_x is required.']


def test_unknown_variables_are_not_read():
    class Strict(dict):
        def __getitem__(self, key):
            if key not in SPEC:
                raise AssertionError('read %s' % key)
            return dict.__getitem__(self, key)
    assert playbook_input_problems(Strict({'unrelated': object(), 'opsguard_backup': 'no'}), SPEC) == []


@pytest.mark.parametrize('spec, renamed, words', [
    ({}, None, 'non-empty dict'),
    ('x', None, 'non-empty dict'),
    ({'a': 'int'}, None, 'rule of a must be a dict'),
    ({'a': {'type': 'integer'}}, None, "type 'integer'"),
    ({'a': {'type': 'int', 'maximum': 3}}, None, 'unknown keys maximum'),
    ({'a': {'type': 'int'}}, ['b'], 'renamed must be a dict'),
])
def test_broken_spec_is_refused_clearly(spec, renamed, words):
    with pytest.raises(AnsibleFilterError, match=words):
        playbook_input_problems({}, spec, renamed)


def test_values_must_be_a_dict():
    with pytest.raises(AnsibleFilterError, match='input must be a dict'):
        playbook_input_problems(['x'], SPEC)


@given(st.integers(min_value=-10 ** 30, max_value=10 ** 30))
def test_int_bounds_property(number):
    spec = {'n': {'type': 'int', 'min': 1, 'max': 100}}
    for value in (number, str(number)):
        problems = playbook_input_problems({'n': value}, spec)
        assert (problems == []) == (1 <= number <= 100)
        if problems:
            assert problems[0].startswith('n must be a whole number from 1 to 100, got ')


@given(st.integers(min_value=MAX_DEFAULT - 5, max_value=10 ** 40))
def test_huge_numbers_are_refused_without_max(number):
    problems = playbook_input_problems({'n': number}, {'n': {'type': 'int'}})
    assert (problems == []) == (number <= MAX_DEFAULT)
    if problems:
        assert 'no larger than %d' % MAX_DEFAULT in problems[0]


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_float_property(number):
    spec = {'f': {'type': 'float', 'max': 1000}}
    problems = playbook_input_problems({'f': number}, spec)
    fine = math.isfinite(number) and 0 <= number <= 1000
    assert (problems == []) == fine
    if fine:
        assert playbook_inputs({'f': number}, spec)['f'] == number
    else:
        assert problems[0].startswith('f must be a number from 0 to 1000, got ')


@given(st.one_of(st.integers(min_value=0, max_value=300).map(lambda n: '%d%%' % n),
                 st.integers(min_value=-50, max_value=10 ** 12),
                 st.booleans(), st.text(max_size=8), st.floats()))
def test_count_or_percent_property(value):
    spec = {'m': {'type': 'count_or_percent'}}
    problems = playbook_input_problems({'m': value}, spec)
    if problems:
        assert problems == [problems[0]] and problems[0].startswith('m must be a count')
        return
    converted = playbook_inputs({'m': value}, spec)['m']
    if isinstance(converted, str):
        assert converted.endswith('%') and 0 <= int(converted[:-1]) <= 100
    else:
        assert not isinstance(converted, bool) and isinstance(converted, int) and 0 <= converted <= MAX_DEFAULT


@given(st.text(max_size=30))
def test_bool_strings_property(text):
    problems = playbook_input_problems({'b': text}, {'b': {'type': 'bool'}})
    word = text.strip().lower()
    assert (problems == []) == (word in {'true', 'yes', 'on', 'y', '1', 'false', 'no', 'off', 'n', '0'})
