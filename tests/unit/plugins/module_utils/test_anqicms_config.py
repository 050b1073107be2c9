# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import json
import pathlib

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils.anqicms_config import (
    MASK,
    MAX_FILE_BYTES,
    ConfigError,
    check_document,
    check_options,
    decode_config,
    desired_settings,
    is_secret_key,
    secret_values,
    drop_unset,
    go_quote,
    mask_secrets,
    merge_settings,
    order_keys,
    parse_config,
    plan_update,
    render_config,
    same_value,
)

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
APP_WRITTEN = (FIXTURES / 'config_app_written.json').read_text(encoding='utf-8')


def test_render_reproduces_the_app_written_file_byte_for_byte():
    assert render_config(parse_config(APP_WRITTEN)) == APP_WRITTEN


@pytest.mark.parametrize('text, expected', [
    ('plain', '"plain"'),
    ('a<b>&c', '"a\\u003cb\\u003e\\u0026c"'),
    ('quote"back\\slash', '"quote\\"back\\\\slash"'),
    ('tab\tnl\ncr\r', '"tab\\tnl\\ncr\\r"'),
    ('\x01\x1f', '"\\u0001\\u001f"'),
    ('\u2028\u2029', '"\\u2028\\u2029"'),
    ('中文站点', '"中文站点"'),
])
def test_go_quote(text, expected):
    assert go_quote(text) == expected
    assert json.loads(expected) == text


@pytest.mark.parametrize('value, expected', [
    ({}, '{}'),
    ([], '[]'),
    ({'a': []}, '{\n\t"a": []\n}'),
    ({'a': [1, True, None]}, '{\n\t"a": [\n\t\t1,\n\t\ttrue,\n\t\tnull\n\t]\n}'),
    ({'a': {'b': {}}}, '{\n\t"a": {\n\t\t"b": {}\n\t}\n}'),
    ({'f': 2.0, 'g': 2.5}, '{\n\t"f": 2,\n\t"g": 2.5\n}'),
])
def test_render_shapes(value, expected):
    assert render_config(value) == expected


@pytest.mark.parametrize('text', ['', '  \n'])
def test_empty_file_is_empty_object(text):
    assert not parse_config(text)


@pytest.mark.parametrize('text, fragment', [
    ('{"mysql": ', 'not valid JSON'),
    ('[1, 2]', 'JSON list where AnQiCMS expects an object'),
    ('"x"', 'JSON str'),
])
def test_parse_rejects_non_objects_with_a_fix(text, fragment):
    with pytest.raises(ConfigError) as err:
        parse_config(text, '/opt/a/config.json')
    assert fragment in str(err.value)
    assert '/opt/a/config.json' in str(err.value)
    assert 'left untouched' in str(err.value)


@pytest.mark.parametrize('left, right, equal', [
    (8001, 8001, True),
    (8001, 8001.0, True),
    (8001, '8001', False),
    (True, 1, False),
    (False, 0, False),
    (True, True, True),
    ({'a': 1}, {'a': 1}, True),
    ({'a': 1}, {'a': 1, 'b': 2}, False),
    ([1, 2], [2, 1], False),
    (None, None, True),
    ('', None, False),
])
def test_same_value(left, right, equal):
    assert same_value(left, right) is equal


def test_drop_unset_removes_unmanaged_options():
    assert drop_unset({'mysql': {'user': None, 'port': 3306}, 'server': {'env': None}, 'x': None}) == {'mysql': {'port': 3306}}


def test_merge_keeps_unmanaged_keys_and_reports_changed_ones():
    current = parse_config(APP_WRITTEN)
    current['custom'] = {'keep': 1}
    merged, changed = merge_settings(current, {'server': {'port': 8002}, 'mysql': {'user': 'anqicms'}})
    assert changed == ['server.port']
    assert merged['server'] == {'env': 'production', 'port': 8002, 'log_level': 'error'}
    assert merged['custom'] == {'keep': 1}
    assert current['server']['port'] == 8001, 'input must not be modified'


def test_merge_replaces_a_scalar_with_a_section():
    merged, changed = merge_settings({'server': 'broken'}, {'server': {'port': 1}})
    assert merged == {'server': {'port': 1}}
    assert changed == ['server']


def test_order_keys_uses_the_app_struct_order_for_new_keys():
    data = order_keys({'server': {'port': 1, 'custom': 2, 'env': 'production'}, 'mysql': {'port': 3306, 'database': 'd'}})
    assert list(data) == ['server', 'mysql']
    assert list(data['server']) == ['env', 'port', 'custom']
    assert list(data['mysql']) == ['database', 'port']


def test_mask_secrets_does_not_touch_the_input():
    data = parse_config(APP_WRITTEN)
    masked = mask_secrets(data)
    assert masked['mysql']['password'] == MASK
    assert data['mysql']['password'] == 's3cret<&>'
    assert mask_secrets({'mysql': {'password': ''}})['mysql']['password'] == ''


def test_plan_app_rewrite_in_another_layout_is_no_change():
    # The same settings, written with spaces, another key order and a trailing newline.
    data = parse_config(APP_WRITTEN)
    other = json.dumps({'server': data['server'], 'mysql': data['mysql']}, indent=2) + '\n'
    plan = plan_update(other, {'mysql': data['mysql'], 'server': data['server']})
    assert plan['needs_write'] is False
    assert plan['changed_keys'] == []
    assert plan['content'] == other


def test_plan_missing_file_is_written_in_app_layout():
    plan = plan_update(None, {'server': {'port': 8001, 'env': 'production', 'log_level': None}})
    assert plan['needs_write'] is True
    assert plan['changed_keys'] == ['server']
    assert plan['content'] == '{\n\t"server": {\n\t\t"env": "production",\n\t\t"port": 8001\n\t}\n}'


def test_plan_changed_value():
    plan = plan_update(APP_WRITTEN, {'mysql': {'password': 'new', 'port': 3306}})
    assert plan['changed_keys'] == ['mysql.password']
    assert json.loads(plan['content'])['mysql']['password'] == 'new'
    assert plan['content'].startswith('{\n\t"mysql": {\n\t\t"database": "anqicms",')


@pytest.mark.parametrize('data, fragment', [
    (b'\xef\xbb\xbf{}', 'byte order mark'),
    (b'{"a": "\xc3"}', 'not valid UTF-8 (byte 7'),
    (b' ' * (MAX_FILE_BYTES + 1), 'larger than'),
])
def test_decode_refuses_what_go_cannot_read(data, fragment):
    with pytest.raises(ConfigError, match='left untouched') as err:
        decode_config(data, '/x/config.json')
    assert fragment in str(err.value)


def test_decode_accepts_utf8_up_to_the_limit():
    assert decode_config('{"a": "中"}'.encode('utf-8')) == '{"a": "中"}'
    assert decode_config(b' ' * MAX_FILE_BYTES) == ' ' * MAX_FILE_BYTES


@pytest.mark.parametrize('text, fragment', [
    ('{"a": NaN}', 'NaN is not a JSON value'),
    ('{"a": [Infinity]}', 'Infinity is not a JSON value'),
    ('{"a": -1e999}', 'out of range'),
    ('{"a": 1, "a": 1}', 'duplicate key "a"'),
    ('{"a": {"b": 1, "b": 2}}', 'duplicate key "b"'),
    ('{"a": "\\udfff"}', 'unpaired surrogate'),
    ('[' * 50000 + ']' * 50000, 'nested too deeply'),
    ('{"a": ' + '{"b": ' * 40 + '1' + '}' * 41, 'nested more than 32 levels'),
])
def test_parse_is_strict(text, fragment):
    with pytest.raises(ConfigError) as err:
        parse_config(text, '/x/config.json')
    assert fragment in str(err.value)
    assert 'left untouched' in str(err.value)


def test_parse_keeps_big_integers_exact():
    assert parse_config('{"a": 18446744073709551616, "b": 1e308}') == {'a': 2 ** 64, 'b': 1e308}


@pytest.mark.parametrize('params, fragment', [
    ({'server': {'port': 0}}, 'server.port=0 is out of range'),
    ({'mysql': {'port': True}}, 'mysql.port=true is a boolean'),
    ({'settings': {'server': 1}}, 'settings.server=1 is a integer'),
    ({'settings': {'MYSQL': {}}}, "use 'mysql'"),
    ({'settings': {'mysql': {'Use_Default': True}}}, "use 'use_default'"),
    ({'settings': {'mysql': {'password': 'a\x00'}}}, 'contains a NUL'),
    ({'settings': {'a': {1: 2}}}, 'key 1 that is not a string'),
    ({'settings': {'a': {1, 2}}}, 'set, which JSON cannot hold'),
])
def test_check_options_names_the_option(params, fragment):
    with pytest.raises(ConfigError) as err:
        check_options(params)
    assert fragment in str(err.value)


def test_check_options_accepts_unknown_keys_in_known_sections():
    check_options({'settings': {'mysql': {'charset': 'utf8mb4', 'port': 3306}, 'sparks': {'x': [1.5, None]}}})


def test_desired_settings_typed_options_win_and_a_null_section_is_ignored():
    assert desired_settings({'settings': {'server': None, 'x': 1}, 'server': {'port': 1, 'env': None}, 'mysql': None}) == {
        'server': {'port': 1}, 'x': 1}


@pytest.mark.parametrize('doc, fragment', [
    ({'server': 'x'}, 'server = "x" (a JSON string)'),
    ({'mysql': {'port': 3306.0}}, 'mysql.port = 3306.0'),
    ({'mysql': {'port': 2 ** 63}}, 'mysql.port = 9223372036854775808'),
    ({'server': {'log_level': 1}}, 'server.log_level = 1'),
    ({'mysql': {'password': 1234}}, 'mysql.password = a value'),
    ({'mysql': {}, 'MySQL': {}}, "reads as 'mysql'"),
])
def test_check_document_refuses_what_anqicms_cannot_decode(doc, fragment):
    with pytest.raises(ConfigError) as err:
        check_document(doc, '/x/config.json')
    assert fragment in str(err.value)
    assert '1234' not in str(err.value)


def test_check_document_accepts_nulls_and_go_int_range():
    check_document({'mysql': None, 'server': {'port': -2 ** 63, 'env': None}, 'sparks': {'port': 'x'}})


def test_merge_repairs_an_integer_held_as_float():
    merged, changed = merge_settings({'server': {'port': 8001.0}}, {'server': {'port': 8001}})
    assert changed == ['server.port']
    assert isinstance(merged['server']['port'], int)


@pytest.mark.parametrize('key, secret', [
    ('password', True), ('DB_PASSWORD', True), ('passwd', True), ('db_pass', True), ('api_secret', True),
    ('token', True), ('apiKey', True), ('private_key', True), ('credentials', True),
    ('port', False), ('passport', False), ('user', False), (1, False),
])
def test_is_secret_key(key, secret):
    assert is_secret_key(key) is secret


def test_mask_and_collect_secrets_at_any_depth():
    doc = {'mysql': {'password': 'p1'}, 'a': [{'token': 42}, {'b': {'secret': {'x': 'p2', 'y': ['p3', True]}}}], 'pwd': ''}
    assert mask_secrets(doc) == {'mysql': {'password': MASK}, 'a': [{'token': MASK}, {'b': {'secret': MASK}}], 'pwd': ''}
    assert secret_values(doc) == {'p1', '42', 'p2', 'p3'}
    assert doc['mysql']['password'] == 'p1'


def test_plan_refuses_a_result_too_big_to_read_back():
    with pytest.raises(ConfigError, match='nothing was written'):
        plan_update(None, {'x': 'y' * MAX_FILE_BYTES})
