# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""anqicms_config_repair: a kept copy while the instance runs, the newest last-good copy back before a start."""
from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.opsguard.anqicms.plugins.modules import anqicms_config_repair as mod
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.test_config_repair import good_bytes, make_backup


@pytest.fixture
def inst(tmp_path):
    root = tmp_path / 'opt' / 'www'
    root.mkdir(parents=True)
    (root / 'config.json').write_bytes(good_bytes())
    os.chmod(root / 'config.json', 0o640)
    return {'root': root, 'copies': tmp_path / 'copies', 'dest': tmp_path / 'backups'}


def args(inst, **extra):
    return dict({'path': str(inst['root']), 'port': 8001, 'copies_dir': str(inst['copies']), 'backup_dest': str(inst['dest'])}, **extra)


def kept_path(inst):
    return inst['copies'] / mod.copy_name(str(inst['root']))


def test_keep_writes_once_and_check_mode_writes_nothing(run_main, inst):
    result = run_main(mod.main, args(inst, state='kept'), check=True)
    assert result['changed'] and result['kept'] and not inst['copies'].exists()
    result = run_main(mod.main, args(inst, state='kept'))
    assert result['changed'] and kept_path(inst).read_bytes() == good_bytes()
    assert stat.S_IMODE(os.stat(kept_path(inst)).st_mode) == 0o600 and stat.S_IMODE(os.stat(inst['copies']).st_mode) == 0o700
    assert not run_main(mod.main, args(inst, state='kept'))['changed']


def test_keep_never_copies_a_broken_file_over_a_good_copy(run_main, inst):
    run_main(mod.main, args(inst, state='kept'))
    (inst['root'] / 'config.json').write_bytes(b'{"mysql": {"datab')
    result = run_main(mod.main, args(inst, state='kept'))
    assert not result['changed'] and not result.get('failed') and 'not valid JSON' in result['problem']
    assert kept_path(inst).read_bytes() == good_bytes()
    (inst['root'] / 'config.json').write_bytes(good_bytes(port=8002))
    assert 'is for port 8002' in run_main(mod.main, args(inst, state='kept'))['problem']


def test_a_usable_file_is_left_alone(run_main, inst):
    result = run_main(mod.main, args(inst))
    assert not result['changed'] and not result['repaired'] and result['problem'] is None


@pytest.mark.parametrize('broken', [b'', b'{\n\t"mysql": {\n\t\t"data', b'null'])
def test_repair_from_the_kept_copy_keeps_owner_mode_and_the_broken_file(run_main, inst, broken):
    run_main(mod.main, args(inst, state='kept'))
    config = inst['root'] / 'config.json'
    config.write_bytes(broken)
    result = run_main(mod.main, args(inst), check=True)
    assert result['changed'] and result['repaired'] and 'would be restored from the kept copy' in result['msg']
    assert config.read_bytes() == broken
    result = run_main(mod.main, args(inst))
    assert result['changed'] and result['source']['kind'] == 'kept', result
    assert config.read_bytes() == good_bytes() and stat.S_IMODE(os.stat(config).st_mode) == 0o640
    assert open(result['broken_copy'], 'rb').read() == broken
    assert 'config.json restored from the kept copy' in json.dumps(result['warnings']), result
    assert not run_main(mod.main, args(inst))['changed']


def test_repair_from_the_newest_verified_backup(run_main, inst):
    make_backup(inst['dest'], 'www', str(inst['root']), '20260101T000000000000Z', good_bytes(log_level='jan'))
    make_backup(inst['dest'], 'www', str(inst['root']), '20260201T000000000000Z', good_bytes(log_level='feb'), flip=True)
    (inst['root'] / 'config.json').unlink()
    result = run_main(mod.main, args(inst))
    assert result['changed'] and result['source']['id'] == '20260101T000000000000Z', result
    assert 'failed verification' in result['passed_over'][0]
    assert 'does not exist: config.json restored from verified backup 20260101T000000000000Z' in result['msg']
    assert json.loads((inst['root'] / 'config.json').read_bytes())['server']['log_level'] == 'jan'
    assert 'broken_copy' not in result


def test_no_usable_copy_fails_and_changes_nothing(run_main, inst):
    config = inst['root'] / 'config.json'
    config.write_bytes(b'{')
    result = run_main(mod.main, args(inst))
    assert result['failed'] and 'no last-good copy of it was found' in result['msg'] and 'the instance cannot start' in result['msg']
    assert config.read_bytes() == b'{' and os.listdir(inst['root']) == ['config.json']


def test_a_linked_config_is_never_written_through(run_main, inst, tmp_path):
    run_main(mod.main, args(inst, state='kept'))
    target = tmp_path / 'target.json'
    target.write_bytes(b'')
    config = inst['root'] / 'config.json'
    config.unlink()
    config.symlink_to(target)
    result = run_main(mod.main, args(inst))
    assert result['failed'] and 'symbolic link' in result['msg'] and target.read_bytes() == b''


@pytest.mark.parametrize('extra, message', [
    ({'path': 'relative/www'}, "path='relative/www' must be an absolute path"),
    ({'path': '/'}, "path='/' must be an absolute path other than /"),
    ({'copies_dir': 'copies'}, "copies_dir='copies' must be an absolute path"),
    ({'instance': '../x'}, "instance='../x' must be a directory name"),
    ({'port': 70000}, 'port=70000 must be a TCP port'),
    ({'port': float('inf')}, 'port=inf must be a finite integer'),
    ({'state': 'fixed'}, 'value of state must be one of: kept, repaired'),
])
def test_bad_options_are_refused_before_anything(run_main, inst, extra, message):
    result = run_main(mod.main, args(inst, **extra))
    assert result['failed'] and message in result['msg'], result['msg']
    assert not inst['copies'].exists()
