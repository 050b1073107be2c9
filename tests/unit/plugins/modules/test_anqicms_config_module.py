# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import json
import os
import stat

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.opsguard.anqicms.plugins.modules import anqicms_config

SECRET = 'Db-Pass<1>&2'


def run(capsys, args, check=False, diff=False):
    args = dict(args)
    args['_ansible_check_mode'] = check
    args['_ansible_diff'] = diff
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            anqicms_config.main()
    out = capsys.readouterr().out
    return json.loads(out)


def settings(path, **extra):
    args = {
        'path': str(path),
        'mysql': {'database': 'site1', 'user': 'site1', 'password': SECRET, 'host': '127.0.0.1', 'port': 3306},
        'server': {'env': 'production', 'port': 8001},
        'mode': '0600',
    }
    args.update(extra)
    return args


def test_create_then_rerun_unchanged(tmp_path, capsys):
    path = tmp_path / 'config.json'
    first = run(capsys, settings(path))
    assert first['changed'] is True
    assert first['created'] is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert text.startswith('{\n\t"mysql": {\n\t\t"database": "site1",')
    assert not text.endswith('\n')
    assert '\\u003c1\\u003e\\u00262' in text
    assert json.loads(text)['mysql']['password'] == SECRET
    assert first['config']['mysql']['password'] == '********'
    assert SECRET not in json.dumps(first)

    second = run(capsys, settings(path))
    assert second['changed'] is False
    assert second['changed_keys'] == []
    assert path.read_text() == text


def test_check_mode_reports_but_writes_nothing(tmp_path, capsys):
    path = tmp_path / 'config.json'
    result = run(capsys, settings(path), check=True, diff=True)
    assert result['changed'] is True
    assert not path.exists()
    assert result['diff'][0]['before'] == ''
    assert '"port": 8001' in result['diff'][0]['after']
    assert SECRET not in result['diff'][0]['after']


def test_app_rewrite_is_not_a_change(tmp_path, capsys):
    path = tmp_path / 'config.json'
    run(capsys, settings(path))
    data = json.loads(path.read_text())
    # The app writes the whole struct back, in its own order, unmanaged defaults included.
    data['mysql']['use_default'] = False
    data['server'] = {'log_level': '', **data['server']}
    path.write_text(json.dumps(data, indent=4))
    result = run(capsys, settings(path), diff=True)
    assert result['changed'] is False
    assert 'diff' not in result
    assert json.loads(path.read_text())['mysql']['use_default'] is False


def test_changed_value_keeps_unmanaged_keys_with_diff_and_backup(tmp_path, capsys):
    path = tmp_path / 'config.json'
    path.write_text('{"mysql": {"password": "old", "charset": "utf8mb4"}, "plugin": {"x": 1}}')
    os.chmod(path, 0o600)
    result = run(capsys, {'path': str(path), 'mysql': {'password': SECRET}, 'backup': True}, diff=True)
    assert result['changed'] is True
    assert result['changed_keys'] == ['mysql.password']
    data = json.loads(path.read_text())
    assert data == {'mysql': {'password': SECRET, 'charset': 'utf8mb4'}, 'plugin': {'x': 1}}
    assert os.path.exists(result['backup_file'])
    before, after = result['diff'][0]['before'], result['diff'][0]['after']
    assert 'old' not in before and SECRET not in after
    assert '"charset": "utf8mb4"' in after


def test_mode_only_change(tmp_path, capsys):
    path = tmp_path / 'config.json'
    run(capsys, settings(path))
    os.chmod(path, 0o666)
    check = run(capsys, settings(path), check=True, diff=True)
    assert check['changed'] is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
    result = run(capsys, settings(path))
    assert result['changed'] is True
    assert result['changed_keys'] == []
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize('content, fragment', [
    ('{"mysql": {', 'not valid JSON'),
    ('["a"]', 'expects an object'),
])
def test_broken_file_is_left_untouched(tmp_path, capsys, content, fragment):
    path = tmp_path / 'config.json'
    path.write_text(content)
    result = run(capsys, settings(path))
    assert result['failed'] is True
    assert fragment in result['msg']
    assert str(path) in result['msg']
    assert path.read_text() == content


def test_missing_file_with_create_false_fails(tmp_path, capsys):
    path = tmp_path / 'config.json'
    result = run(capsys, settings(path, create=False))
    assert result['failed'] is True
    assert 'create=false' in result['msg']
    assert not path.exists()


def test_missing_directory_names_the_fix(tmp_path, capsys):
    path = tmp_path / 'nope' / 'config.json'
    result = run(capsys, settings(path))
    assert result['failed'] is True
    assert 'create the instance directory first' in result['msg']


def test_settings_are_deep_merged_under_typed_options(tmp_path, capsys):
    path = tmp_path / 'config.json'
    result = run(capsys, {'path': str(path), 'settings': {'server': {'port': 1, 'log_level': 'info'}}, 'server': {'port': 8005}})
    assert result['changed'] is True
    assert json.loads(path.read_text()) == {'server': {'port': 8005, 'log_level': 'info'}}
