# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""anqicms_config against hostile input and faults (issue 11 items 4, 8, 9, 16 and their siblings).

Every refusal is checked the same way: failed with a message that names the thing, and the file on
disk byte-identical with the same mode afterwards, in check mode as in a real run.
"""
from __future__ import annotations

import json
import os
import stat

import pytest

from ansible.module_utils import basic

from ansible_collections.opsguard.anqicms.plugins.modules import anqicms_config

SECRET = 'Sekr1t-Pass<1>&2'
ORIGINAL = ('{\n\t"mysql": {\n\t\t"database": "site1",\n\t\t"password": "old-pass"\n\t},\n'
            '\t"server": {\n\t\t"env": "production",\n\t\t"port": 8001\n\t}\n}')


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / 'config.json'
    path.write_text(ORIGINAL)
    os.chmod(path, 0o600)
    return path


def snapshot(path):
    content = path.read_bytes() if path.is_file() else os.readlink(path) if path.is_symlink() else None
    return content, stat.S_IMODE(os.lstat(path).st_mode), sorted(os.listdir(path.parent))


def run(run_main, args, check=False, diff=False):
    return run_main(anqicms_config.main, args, check=check, diff=diff)


def assert_refused(run_main, path, args, fragments):
    """Refused in check mode and in a real run, with the same message, and nothing on disk changed."""
    before = snapshot(path) if os.path.lexists(path) else None
    messages = []
    for check in (True, False):
        result = run(run_main, dict(args, path=str(path)), check=check, diff=True)
        assert result.get('failed') is True, result
        for fragment in fragments:
            assert fragment in result['msg'], result['msg']
        after = snapshot(path) if os.path.lexists(path) else None
        assert after == before
        messages.append(result['msg'])
    assert messages[0] == messages[1]
    return messages[0]


# --- item 4: options that land in config.json ---------------------------------------------------

@pytest.mark.parametrize('args, fragments', [
    ({'settings': {'server': 'x'}, 'server': {'port': 8002}}, ['settings.server="x"', 'expects an object']),
    ({'settings': {'mysql': [1, 2]}}, ['settings.mysql=', 'array']),
    ({'server': {'port': -1}}, ['server.port=-1', '1-65535']),
    ({'server': {'port': 0}}, ['server.port=0', '1-65535']),
    ({'server': {'port': 99999}}, ['server.port=99999', '1-65535']),
    ({'server': {'port': 2 ** 64}}, ['server.port=18446744073709551616']),
    ({'server': {'port': 1e308}}, ['server.port=']),
    ({'mysql': {'port': 0}}, ['mysql.port=0']),
    ({'mysql': {'port': 65536}}, ['mysql.port=65536']),
    ({'settings': {'server': {'port': '8001'}}}, ['settings.server.port="8001"', 'integer']),
    ({'settings': {'server': {'port': 8001.5}}}, ['settings.server.port=8001.5']),
    ({'settings': {'server': {'port': True}}}, ['settings.server.port=true']),
    ({'settings': {'mysql': {'port': -5}}}, ['settings.mysql.port=-5']),
    ({'settings': {'mysql': {'use_default': 'yes'}}}, ['settings.mysql.use_default="yes"', 'true or false']),
    ({'settings': {'mysql': {'host': 5}}}, ['settings.mysql.host', 'expected a string']),
    ({'settings': {'server': {'env': 'staging'}}}, ['settings.server.env="staging"', 'production, development']),
    ({'server': {'env': 'staging'}}, ['env must be one of: production, development', 'staging']),
    ({'settings': {'Server': {'port': 8001}}}, ["use 'server'", 'case-insensitively']),
    ({'settings': {'server': {'PORT': 8001}}}, ["use 'port'"]),
    ({'settings': {'\u017ferver': {'port': 8001}}}, ["use 'server'"]),
    ({'settings': {'rate': float('nan')}}, ['settings.rate is nan']),
    ({'settings': {'rate': float('inf')}}, ['settings.rate is inf']),
    ({'settings': {'x': [1, {'y': float('-inf')}]}}, ['settings.x[1].y is -inf']),
    ({'settings': {'x': '\ud800'}}, ['settings.x', 'unpaired surrogate']),
    ({'settings': {'\udc80': 1}}, ['unpaired surrogate']),
    ({'mysql': {'database': 'd' * 65}}, ['mysql.database is 65 characters long', 'at most 64']),
    ({'mysql': {'user': 'u' * 81}}, ['mysql.user is 81']),
    ({'mysql': {'host': 'h' * 256}}, ['mysql.host is 256']),
    ({'mysql': {'host': 'db\n.example'}}, ['mysql.host', 'control character']),
    ({'mysql': {'database': 'a\x00b'}}, ['mysql.database', 'control character']),
    ({'server': {'log_level': 'x' * 33}}, ['server.log_level is 33']),
    ({'settings': {'server': {'log_level': 'in\tfo'}}}, ['settings.server.log_level', 'control character']),
    ({'mysql': {'password': 'p' * 4097}}, ['mysql.password is 4097 characters long']),
    ({'settings': {'deep': json.loads('[' * 40 + ']' * 40)}}, ['nested more than 32 levels']),
    ({'settings': {'big': 'x' * (1024 * 1024)}}, ['more than the 1048576 this module reads back']),
])
def test_bad_options_are_refused_before_anything(run_main, cfg, args, fragments):
    assert_refused(run_main, cfg, args, fragments)


def test_bad_options_leave_a_missing_file_missing(run_main, tmp_path):
    path = tmp_path / 'config.json'
    assert_refused(run_main, path, {'server': {'port': 70000}}, ['server.port=70000'])
    assert not path.exists()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('args', [
    {'settings': {'server': None}, 'server': {'port': 8002}},
    {'settings': {'server': {'log_level': 'info'}}, 'server': {'port': 8002}},
    {'settings': {'plugin': {'rate': 1e308, 'big': 2 ** 64, 'neg': -1, 'empty': '', 'nul': 'a\x00b'}}},
])
def test_good_options_give_a_file_anqicms_can_read(run_main, cfg, args):
    result = run(run_main, dict(args, path=str(cfg)))
    assert result['changed'] is True
    data = json.loads(cfg.read_text(), parse_constant=pytest.fail)
    assert isinstance(data['server']['port'], int)


def test_empty_strings_are_what_the_app_writes_before_install(run_main, cfg):
    result = run(run_main, {'path': str(cfg), 'mysql': {'database': '', 'user': '', 'password': '', 'host': ''}, 'server': {'log_level': ''}})
    assert result['changed'] is True
    assert json.loads(cfg.read_text())['mysql'] == {'database': '', 'password': '', 'user': '', 'host': ''}


# --- item 4: the file read back -----------------------------------------------------------------

BAD_FILES = [
    (b'{"a": NaN}', ['not valid JSON', 'NaN is not a JSON value']),
    (b'{"server": {"port": Infinity}}', ['Infinity is not a JSON value']),
    (b'{"a": -Infinity}', ['-Infinity is not a JSON value']),
    (b'{"a": 1e400}', ['out of range']),
    (b'{"mysql": {"password": "\xff\xfe"}}', ['not valid UTF-8', 'byte 24']),
    (b'\xef\xbb\xbf{"server": {"port": 8001}}', ['byte order mark']),
    (b'{"server": {"port": 8001, "port": 8002}}', ['duplicate key "port"']),
    (b'{"a": "\\ud800"}', ['unpaired surrogate']),
    (b'[' * 100000 + b']' * 100000, ['nested too deeply']),
    (b'{"a": ' + b'[' * 40 + b']' * 40 + b'}', ['nested more than 32 levels']),
    (b'{"a": "' + b'x' * (1024 * 1024) + b'"}', ['larger than 1048576 bytes']),
    (b'{"mysql": ', ['not valid JSON']),
    (b'["a"]', ['expects an object']),
    (b'null', ['expects an object']),
]


@pytest.mark.parametrize('content, fragments', BAD_FILES)
def test_a_file_anqicms_cannot_parse_is_refused_untouched(run_main, cfg, content, fragments):
    cfg.write_bytes(content)
    assert_refused(run_main, cfg, {'server': {'port': 8002}, 'backup': True}, fragments + [str(cfg), 'left untouched'])


@pytest.mark.parametrize('content, fragments', [
    ('{"server": "x", "mysql": {"port": 3306}}', ['server = "x"', 'expects an object']),
    ('{"mysql": [], "server": {}}', ['mysql = []', 'expects an object']),
    ('{"mysql": {"port": "3306"}}', ['mysql.port = "3306"', 'expects an integer']),
    ('{"mysql": {"port": 3306.0}}', ['mysql.port = 3306.0', 'expects an integer']),
    ('{"mysql": {"port": 18446744073709551616}}', ['mysql.port = 18446744073709551616']),
    ('{"mysql": {"use_default": "false"}}', ['mysql.use_default = "false"', 'true or false']),
    ('{"mysql": {"password": 12345678}}', ['mysql.password = a value', 'a string']),
    ('{"Server": {"port": 8001}}', ['"Server"', "reads as 'server'"]),
    ('{"mysql": {"Password": "x"}}', ['"mysql.Password"', "reads as 'mysql.password'"]),
])
def test_a_file_with_values_anqicms_cannot_decode_is_refused(run_main, cfg, content, fragments):
    cfg.write_text(content)
    message = assert_refused(run_main, cfg, {'settings': {'plugin': {'a': 1}}}, fragments + [str(cfg), 'left untouched'])
    assert '12345678' not in message


def test_a_bad_value_the_task_sets_is_repaired(run_main, cfg):
    cfg.write_text('{"server": {"port": 8001.0, "env": "production"}, "mysql": "broken"}')
    result = run(run_main, {'path': str(cfg), 'server': {'port': 8001}, 'mysql': {'database': 'd'}})
    assert result['changed'] is True
    assert result['changed_keys'] == ['mysql', 'server.port']
    assert cfg.read_text() == '{\n\t"server": {\n\t\t"env": "production",\n\t\t"port": 8001\n\t},\n\t"mysql": {\n\t\t"database": "d"\n\t}\n}'
    assert run(run_main, {'path': str(cfg), 'server': {'port': 8001}, 'mysql': {'database': 'd'}})['changed'] is False


@pytest.mark.parametrize('content', ['', '\n  \n'])
def test_an_empty_file_left_by_a_killed_app_write_is_written(run_main, cfg, content):
    cfg.write_text(content)
    result = run(run_main, {'path': str(cfg), 'server': {'port': 8002}})
    assert result['changed'] is True
    assert result['created'] is False
    assert json.loads(cfg.read_text()) == {'server': {'port': 8002}}


def test_null_sections_in_the_file_are_accepted(run_main, cfg):
    cfg.write_text('{"mysql": null, "server": {"port": null, "env": "production"}}')
    result = run(run_main, {'path': str(cfg), 'server': {'env': 'production'}})
    assert result['changed'] is False
    assert 'failed' not in result


# --- item 8: secrets, whichever way they are given ----------------------------------------------

SECRET_WAYS = [
    {'mysql': {'password': SECRET}},
    {'settings': {'mysql': {'password': SECRET}}},
    {'settings': {'mysql': {'password': SECRET}}, 'mysql': {'user': 'u'}},
    {'settings': {'plugin': {'api_secret': SECRET}}},
    {'settings': {'plugin': {'nested': [{'db_password': SECRET}]}}},
    {'settings': {'sparks': {'token': [SECRET]}}},
    {'settings': {'smtp': {'passwd': {'value': SECRET}}}},
    {'settings': json.dumps({'mysql': {'password': SECRET}})},
    {'settings': 'db_password=%s' % SECRET},
]


@pytest.mark.parametrize('text', ['{"mysql": {"password": "%s"' % SECRET, 'password %s' % SECRET])
def test_a_secret_in_settings_text_ansible_cannot_read_is_hidden(run_main, cfg, text):
    result = run(run_main, {'path': str(cfg), 'settings': text})
    assert result['failed'] is True
    assert SECRET not in json.dumps(result)


@pytest.mark.parametrize('args', SECRET_WAYS)
@pytest.mark.parametrize('check', [True, False])
def test_a_secret_appears_nowhere_in_the_result(run_main, cfg, args, check):
    result = run(run_main, dict(args, path=str(cfg)), check=check, diff=True)
    assert result['changed'] is True
    assert 'invocation' in result
    assert SECRET not in json.dumps(result)
    assert 'Sekr1t' not in json.dumps(result)
    assert 'old-pass' not in json.dumps(result)
    if not check:
        assert SECRET in cfg.read_text().replace('\\u003c', '<').replace('\\u003e', '>').replace('\\u0026', '&')


@pytest.mark.parametrize('args', SECRET_WAYS)
def test_a_secret_appears_nowhere_when_the_task_fails(run_main, cfg, args):
    cfg.write_text('{"a": NaN}')
    result = run(run_main, dict(args, path=str(cfg), server={'port': 8001}), diff=True)
    assert result['failed'] is True
    assert SECRET not in json.dumps(result)


@pytest.mark.parametrize('args', SECRET_WAYS)
@pytest.mark.parametrize('bad', [{'server': {'env': 'staging'}}, {'server': {'port': 'x'}}, {'create': 'maybe'}, {'unknown': 1}])
def test_a_secret_appears_nowhere_when_ansible_refuses_the_arguments(run_main, cfg, args, bad):
    result = run(run_main, dict(args, path=str(cfg), **bad), diff=True)
    assert result['failed'] is True
    assert SECRET not in json.dumps(result)


@pytest.mark.parametrize('args', SECRET_WAYS)
def test_a_secret_appears_nowhere_with_task_no_log(run_main, cfg, args):
    result = run(run_main, dict(args, path=str(cfg), _ansible_no_log=True), diff=True)
    assert SECRET not in json.dumps(result)


@pytest.mark.parametrize('args', SECRET_WAYS)
def test_a_secret_is_not_in_the_invocation_log(run_main, cfg, args, monkeypatch):
    logged = []
    monkeypatch.setattr(basic.AnsibleModule, 'log', lambda self, msg, log_args=None: logged.append((msg, log_args)))
    run(run_main, dict(args, path=str(cfg)))
    assert logged, 'the invocation is still logged'
    assert 'Invoked with' in logged[0][0]
    assert SECRET not in repr(logged)


def test_a_bad_secret_is_refused_without_echoing_it(run_main, cfg):
    message = assert_refused(run_main, cfg, {'settings': {'mysql': {'password': 'x' * 4096 + SECRET}}}, ['settings.mysql.password'])
    assert 'xxxx' not in message
    message = assert_refused(run_main, cfg, {'mysql': {'password': SECRET + '\x00'}}, ['mysql.password contains a NUL'])
    assert 'Sekr1t' not in message


def test_secrets_already_in_the_file_are_masked_by_key_name(run_main, cfg):
    cfg.write_text('{"mysql": {"password": "file-pass-1"}, "plugin": {"aws_secret_key": "file-secret-2", "n": [{"token": 7}]}}')
    result = run(run_main, {'path': str(cfg), 'server': {'port': 8002}}, diff=True)
    text = json.dumps(result)
    assert 'file-pass-1' not in text and 'file-secret-2' not in text
    assert result['config']['plugin'] == {'aws_secret_key': '********', 'n': [{'token': '********'}]}


# --- item 9: file mode ---------------------------------------------------------------------------

def test_a_new_file_is_0600_without_mode(run_main, tmp_path):
    path = tmp_path / 'config.json'
    old = os.umask(0o022)
    try:
        result = run(run_main, {'path': str(path), 'mysql': {'password': SECRET}})
    finally:
        os.umask(old)
    assert result['changed'] is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.umask(old) == old, 'the module restores the umask'


def test_a_new_file_gets_the_mode_asked_for(run_main, tmp_path):
    path = tmp_path / 'config.json'
    run(run_main, {'path': str(path), 'server': {'port': 8001}, 'mode': '0640'})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_an_existing_world_readable_file_keeps_its_mode_with_a_warning(run_main, cfg):
    os.chmod(cfg, 0o644)
    result = run(run_main, {'path': str(cfg), 'server': {'port': 8002}})
    assert stat.S_IMODE(os.stat(cfg).st_mode) == 0o644
    assert 'readable by every user and holds a password' in json.dumps(result['warnings'])


@pytest.mark.parametrize('args, fragments', [
    ({'mode': 'abc'}, ["mode='abc'", 'not a file mode']),
    ({'mode': '99999'}, ["mode='99999'"]),
    ({'mode': 99999}, ['mode=99999']),
    ({'mode': -1}, ['mode=-1']),
    ({'mode': 'u+z'}, ["mode='u+z'"]),
    ({'owner': '99999999999'}, ['out of range']),
    ({'owner': 'a\x00b'}, ['not a known user']),
])
def test_bad_file_attributes_are_refused_before_the_write(run_main, cfg, args, fragments):
    assert_refused(run_main, cfg, dict(args, server={'port': 8002}, backup=True), fragments)


@pytest.mark.parametrize('option, kind', [('owner', 'user'), ('group', 'group')])
def test_an_unknown_owner_is_refused_but_only_warned_about_in_check_mode(run_main, cfg, option, kind):
    """A play creates the instance's user before its config.json; in check mode that user does not exist yet."""
    before = snapshot(cfg)
    args = {'path': str(cfg), 'server': {'port': 8002}, option: 'no-such-%s-opsguard' % kind}
    check = run(run_main, args, check=True)
    assert not check.get('failed'), check
    assert check['changed'] is True
    assert 'not a known %s on this host yet' % kind in json.dumps(check['warnings'])
    assert snapshot(cfg) == before
    real = run(run_main, args)
    assert real.get('failed') is True and 'not a known %s on this host; create it first' % kind in real['msg']
    assert snapshot(cfg) == before


# --- item 16: symlinks and paths -----------------------------------------------------------------

def test_a_symlinked_config_is_followed_and_stays_a_link(run_main, tmp_path):
    target = tmp_path / 'etc' / 'site1.json'
    target.parent.mkdir()
    target.write_text(ORIGINAL)
    os.chmod(target, 0o600)
    link = tmp_path / 'config.json'
    link.symlink_to(target)
    check = run(run_main, {'path': str(link), 'server': {'port': 8002}, 'mode': '0640'}, check=True)
    assert check['changed'] is True
    assert target.read_text() == ORIGINAL
    result = run(run_main, {'path': str(link), 'server': {'port': 8002}, 'mode': '0640', 'backup': True})
    assert result['changed'] is True
    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    assert json.loads(target.read_text())['server']['port'] == 8002
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert result['backup_file'].startswith(str(target))
    again = run(run_main, {'path': str(link), 'server': {'port': 8002}, 'mode': '0640'})
    assert again['changed'] is False


def test_a_relative_symlink_is_followed(run_main, tmp_path):
    (tmp_path / 'real.json').write_text(ORIGINAL)
    link = tmp_path / 'config.json'
    link.symlink_to('real.json')
    run(run_main, {'path': str(link), 'server': {'port': 8003}})
    assert link.is_symlink()
    assert json.loads((tmp_path / 'real.json').read_text())['server']['port'] == 8003


@pytest.mark.parametrize('make, fragments', [
    (lambda d: (d / 'config.json').symlink_to(d / 'missing.json'), ['symbolic link to', 'missing.json', 'fix or remove the link']),
    (lambda d: (d / 'config.json').symlink_to(d / 'config.json'), ['symbolic link']),
    (lambda d: (d / 'config.json').symlink_to(str(d)), ['not a regular file', 'a link to']),
    (lambda d: (d / 'config.json').symlink_to('/dev/zero'), ['not a regular file']),
    (lambda d: os.mkfifo(str(d / 'config.json')), ['not a regular file']),
    (lambda d: (d / 'config.json').mkdir(), ['not a regular file']),
])
def test_a_path_that_is_not_a_usable_file_is_refused(run_main, tmp_path, make, fragments):
    make(tmp_path)
    path = tmp_path / 'config.json'
    listing = sorted(os.listdir(tmp_path))
    assert_refused(run_main, path, {'server': {'port': 8002}}, fragments)
    assert sorted(os.listdir(tmp_path)) == listing
    assert not (tmp_path / 'missing.json').exists()


@pytest.mark.parametrize('relative, fragments', [
    ('nope/config.json', ['directory', 'does not exist', 'create the instance directory first']),
    ('afile/config.json', ['Not a directory']),
])
def test_check_mode_fails_like_the_real_run_on_a_missing_parent(run_main, tmp_path, relative, fragments):
    (tmp_path / 'afile').write_text('x')
    assert_refused(run_main, tmp_path / relative, {'server': {'port': 8002}}, fragments)
    assert not (tmp_path / 'nope').exists()


@pytest.mark.parametrize('path', ['', 'dir/', 'a\x00b', '/tmp/..'])
def test_a_path_that_names_no_file_is_refused(run_main, path):
    result = run(run_main, {'path': path, 'server': {'port': 8002}}, check=True)
    assert result['failed'] is True
    assert 'does not name a file' in result['msg']


def test_a_path_too_long_is_refused(run_main, tmp_path):
    result = run(run_main, {'path': str(tmp_path / ('x' * 5000) / 'config.json'), 'server': {'port': 8002}})
    assert result['failed'] is True
    assert 'File name too long' in result['msg']


def test_path_traversal_is_just_a_path(run_main, tmp_path):
    (tmp_path / 'a').mkdir()
    path = tmp_path / 'a' / '..' / 'config.json'
    result = run(run_main, {'path': str(path), 'server': {'port': 8002}})
    assert result['changed'] is True
    assert (tmp_path / 'config.json').exists()


def test_an_unwritable_directory_fails_in_check_mode_too(run_main, cfg, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(anqicms_config.os, 'access', lambda p, m, **kw: False if p == str(cfg.parent) else real_access(p, m, **kw))
    assert_refused(run_main, cfg, {'server': {'port': 8002}, 'backup': True}, ['is not writable', 'left untouched'])


def test_a_failing_write_is_a_message_not_a_traceback(run_main, cfg, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(anqicms_config.tempfile, 'mkstemp', boom)
    result = run(run_main, {'path': str(cfg), 'server': {'port': 8002}})
    assert result['failed'] is True
    assert 'No space left on device' in result['msg']
    assert cfg.read_text() == ORIGINAL


def test_a_failing_rename_leaves_no_temp_file(run_main, cfg, monkeypatch):
    def boom(self, *args, **kwargs):
        raise OSError(5, 'Input/output error')
    monkeypatch.setattr(basic.AnsibleModule, 'atomic_move', boom)
    result = run(run_main, {'path': str(cfg), 'server': {'port': 8002}})
    assert result['failed'] is True
    assert 'Input/output error' in result['msg']
    assert os.listdir(cfg.parent) == ['config.json']
    assert cfg.read_text() == ORIGINAL


@pytest.mark.parametrize('section', ['mysql', 'server'])
@pytest.mark.parametrize('port', [float('inf'), float('-inf'), 'inf', '-Infinity', 'NaN', '1e999999999', float('nan'), '8001.5', 'x'])
def test_ports_that_crash_or_hang_the_int_check_are_refused(run_main, cfg, section, port):
    # ansible-core's check_type_int raises OverflowError on inf and builds a billion-digit int for '1e999999999'.
    assert_refused(run_main, cfg, {section: {'port': port}}, ['port'])
