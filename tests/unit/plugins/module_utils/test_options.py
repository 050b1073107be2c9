# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""new_module: an infinite integer option is a refusal with a message, never a traceback."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.opsguard.anqicms.plugins.module_utils import options as O

SPEC = {
    'n': {'type': 'int'},
    'ns': {'type': 'list', 'elements': 'int'},
    'secret': {'type': 'str', 'no_log': True},
    'sub': {'type': 'dict', 'options': {'p': {'type': 'int'}, 'name': {'type': 'str'}}},
    'items': {'type': 'list', 'elements': 'dict', 'options': {'q': {'type': 'int'}}},
}


def build(args):
    def main():
        module = O.new_module(SPEC, 'probe')
        module.exit_json(changed=False, params=module.params)
    return main


@pytest.mark.parametrize('args, named', [
    ({'n': float('inf')}, 'n=inf'),
    ({'n': 'Infinity'}, 'n=Infinity'),
    ({'n': '-inf'}, 'n=-inf'),
    ({'ns': [1, float('inf')]}, 'ns[1]=inf'),
    ({'sub': {'p': 'inf', 'name': 'x'}}, 'sub.p=inf'),
    ({'items': [{'q': 1}, {'q': '-Infinity'}]}, 'items[1].q=-Infinity'),
    ({'n': '1e999999999'}, 'n=1e999999999'),
    ({'n': float('nan')}, 'n=nan'),
])
def test_an_infinite_integer_is_refused_naming_it(run_main, args, named):
    result = run_main(build(args), dict(args, secret='s3cret-value'))
    assert result['failed'] is True
    assert 'probe refused, nothing was done: ' in result['msg']
    assert named in result['msg']
    assert 'must be a finite integer' in result['msg']
    assert 's3cret-value' not in repr(result)


def test_a_plain_ansible_module_really_crashes_on_inf(run_main):
    """The reason new_module exists: if ansible-core ever stops crashing, this tells us."""
    def main():
        AnsibleModule(argument_spec=SPEC).exit_json(changed=False)
    with pytest.raises(OverflowError):
        run_main(main, {'n': float('inf')})


def test_finite_values_pass_through_typed(run_main):
    result = run_main(build({}), {'n': '7', 'ns': ['1', 2], 'sub': {'p': '3'}, 'items': [{'q': 4}]})
    assert result['params']['n'] == 7
    assert result['params']['ns'] == [1, 2]
    assert result['params']['sub']['p'] == 3
    assert result['params']['items'][0]['q'] == 4


@pytest.mark.parametrize('value, bad', [
    (float('inf'), True), ('-Infinity', True), ('nan', True), ('1e31', True), ('1e999999999', True), (b'inf', True),
    ('1e30', False), (10 ** 40, False), (True, False), ('12', False), ('x', False), (None, False), (1.5, False),
])
def test_unconvertible_int(value, bad):
    assert O.unconvertible_int(value) is bad


@settings(max_examples=80, deadline=None)
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=12),
                       st.sampled_from(['inf', '-Infinity', ' nan ', '1e400', '+inf'])))
def test_any_value_is_a_result_or_a_message(run_main, value):
    result = run_main(build({}), {'n': value, 'sub': {'p': value}})
    if result.get('failed'):
        assert result['msg']
    else:
        assert isinstance(result['params']['n'], int)
