# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter missing_packages: the roles run apt only for what dpkg does not have installed."""

from __future__ import annotations

import math
import pathlib

import pytest
import yaml
from hypothesis import given, strategies as st

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.filter import packages as F

ROOT = pathlib.Path(F.__file__).parents[2]
DPKG = 'nginx\tinstalled\ncurl\tconfig-files\nrsync\tnot-installed\nunzip\thalf-installed\n'


def test_the_filter_is_registered_under_its_name():
    assert F.FilterModule().filters() == {'missing_packages': F.missing_packages}


def test_only_packages_dpkg_reports_installed_count_as_installed():
    assert F.missing_packages(['nginx', 'curl', 'rsync', 'unzip', 'iproute2'], DPKG) == ['curl', 'rsync', 'unzip', 'iproute2']


def test_everything_installed_means_nothing_to_do():
    assert F.missing_packages(['nginx'], DPKG) == []
    assert F.missing_packages([], '') == []


def test_order_is_kept_and_each_package_is_named_once():
    assert F.missing_packages(['b', 'nginx', 'a1', 'b', 'a1'], DPKG) == ['b', 'a1']


@pytest.mark.parametrize('spec', ['nginx=1.22.1-9', 'nginx:amd64', 'nginx/bookworm', 'nginx*', 'Nginx'])
def test_anything_but_a_plain_name_is_left_to_apt(spec):
    assert F.missing_packages([spec], DPKG + '%s\tinstalled\n' % spec) == [spec]


def test_a_package_of_a_foreign_architecture_only_is_missing():
    # ${binary:Package} names a foreign-architecture package name:arch: apt must still install the native one.
    assert F.missing_packages(['curl'], 'curl:i386\tinstalled\n') == ['curl']
    assert F.missing_packages(['libc6'], 'libc6:amd64\tinstalled\n') == ['libc6']   # a library of several architectures: apt decides


def test_a_line_that_says_installed_counts_whatever_other_lines_say():
    assert F.missing_packages(['curl'], 'curl:i386\tnot-installed\ncurl\tinstalled\n') == []


@pytest.mark.parametrize('output', [
    'nginx installed\n',            # no tab
    'nginx\tinstalled-ish\n',       # another state
    '\tinstalled\n',                # no name
    'nginx\t\n',                    # no state
    'ngin\x00x\tinstalled\n',       # not a package name
])
def test_malformed_lines_never_make_a_package_installed(output):
    assert F.missing_packages(['nginx'], output) == ['nginx']


def test_a_state_with_blanks_around_it_still_counts():
    assert F.missing_packages(['nginx'], 'nginx\t installed \r\n') == []


@pytest.mark.parametrize('wanted, fragment', [
    ('nginx', 'must be a list'),
    ({'nginx': 1}, 'must be a list'),
    (None, 'must be a list'),
    ([1], 'package 1 must be'),
    ([None], 'package null must be'),
    ([''], 'package "" must be'),
    (['ngi nx'], 'without blanks'),
    (['nginx\n'], 'without blanks'),
    ([math.nan], 'package NaN must be'),
    (['x' * 201], 'must be a non-empty name'),
    (['a'] * 1001, 'more than 1000'),
])
def test_a_bad_package_list_is_refused_with_a_sentence(wanted, fragment):
    with pytest.raises(AnsibleFilterError, match='missing_packages') as err:
        F.missing_packages(wanted, DPKG)
    assert fragment in str(err.value)


def _nested(depth):
    value = []
    for _level in range(depth):
        value = [value]
    return value


def _itself():
    value = []
    value.append(value)
    return value


@pytest.mark.parametrize('item', [{(1, 2): 'x'}, _itself(), _nested(5000), 10 ** 5000, b'nginx', {'nginx'}],
                         ids=['tuple key', 'itself', 'nested 5000', '5001 digits', 'bytes', 'set'])
def test_an_item_that_cannot_be_shown_as_json_is_still_refused_with_a_sentence(item):
    with pytest.raises(AnsibleFilterError, match='^missing_packages: package .* must be a non-empty name'):
        F.missing_packages([item], DPKG)


@pytest.mark.parametrize('output', [None, 1, b'nginx\tinstalled\n', ['nginx\tinstalled']])
def test_output_that_is_not_text_is_refused(output):
    with pytest.raises(AnsibleFilterError, match='dpkg-query output must be text'):
        F.missing_packages(['nginx'], output)


def test_a_huge_output_is_read_only_up_to_its_limit():
    output = 'filler\tinstalled\n' * (F.MAX_OUTPUT // 17 + 1) + 'nginx\tinstalled\n'
    assert F.missing_packages(['nginx', 'filler'], output) == ['nginx']


ANY = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.binary(max_size=5),
                   lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                   max_leaves=8)
NAMES = st.from_regex(r'[a-z0-9][a-z0-9+.-]{1,12}', fullmatch=True)


@given(wanted=ANY, output=ANY)
def test_any_input_gives_a_list_or_a_refusal(wanted, output):
    try:
        result = F.missing_packages(wanted, output)
    except AnsibleFilterError as err:
        assert str(err).startswith('missing_packages: ')
    else:
        assert isinstance(result, list) and all(item in wanted for item in result)


@given(wanted=st.lists(NAMES, max_size=8), installed=st.lists(NAMES, max_size=8),
       other=st.lists(st.tuples(NAMES, st.sampled_from(['config-files', 'not-installed', 'unpacked'])), max_size=4))
def test_missing_is_exactly_the_wanted_names_not_reported_installed(wanted, installed, other):
    output = ''.join('%s\t%s\n' % pair for pair in other) + ''.join('%s\tinstalled\n' % name for name in installed)
    result = F.missing_packages(wanted, output)
    assert result == list(dict.fromkeys(name for name in wanted if name not in installed))


def test_the_roles_ask_dpkg_before_apt_with_the_format_the_filter_reads():
    for tasks in ('roles/app/tasks/main.yml', 'roles/database/tasks/main.yml', 'roles/proxy/tasks/main.yml',
                  'roles/monitor/tasks/main.yml'):
        text = (ROOT / tasks).read_text(encoding='utf-8')
        assert "'--showformat=${binary:Package}\\\\t${db:Status-Status}\\\\n'" in text, tasks
        assert 'opsguard.anqicms.missing_packages(' in text, tasks
        for task in yaml.safe_load(text):
            if 'ansible.builtin.apt' in task and 'name' in task['ansible.builtin.apt']:
                assert 'when' in task, (tasks, task['name'])
