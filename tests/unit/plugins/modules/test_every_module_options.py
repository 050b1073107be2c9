# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One input class, every module: each documented option of each module is tried with the values that broke
one of them (infinite, NaN, absurdly large, NUL bytes). Each must be a refusal that names the option, before
any side effect; never a traceback, never a hang. The options come from the modules' own DOCUMENTATION, so a
new option is covered the day it is documented."""

from __future__ import annotations

import os

import pytest
import yaml

from ansible_collections.opsguard.anqicms.plugins.doc_fragments.mysql_login import ModuleDocFragment
from ansible_collections.opsguard.anqicms.plugins.modules import (action_record, anqicms_config, anqicms_config_repair, backup, graceful_stop,
                                                                  memory_facts, restore)

MODULES = {
    'memory_facts': memory_facts,
    'graceful_stop': graceful_stop,
    'anqicms_config': anqicms_config,
    'backup': backup,
    'restore': restore,
    'anqicms_config_repair': anqicms_config_repair,
}
BAD = {
    'int': [float('inf'), '-Infinity', float('nan'), '1e999999999', 2 ** 80],
    'float': [float('nan'), float('inf'), '-inf', 1e308],
    'path': ['/tmp/a\x00b'],
}


def options_of(module) -> dict:
    doc = yaml.safe_load(module.DOCUMENTATION)
    options = dict(doc.get('options') or {})
    if 'opsguard.anqicms.mysql_login' in (doc.get('extends_documentation_fragment') or []):
        options.update(yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options'])
    return options


def baseline(name: str, tmp_path) -> dict:
    """The fewest arguments with which the module gets as far as checking the option under test."""
    if name == 'graceful_stop':
        return {'exe': str(tmp_path / 'no-such-dir' / 'anqicms')}
    if name == 'anqicms_config':
        return {'path': str(tmp_path / 'config.json')}
    if name in ('backup', 'restore'):
        return {'path': str(tmp_path / 'instance'), 'dest': str(tmp_path / 'backups')}
    if name == 'anqicms_config_repair':
        return {'path': str(tmp_path / 'instance'), 'copies_dir': str(tmp_path / 'copies'), 'backup_dest': str(tmp_path / 'backups')}
    if name == 'action_record':
        return {'action': 'drain', 'instance': 'www', 'outcome': 'drained'}
    return {}


CASES = [(name, option, value)
         for name, module in MODULES.items()
         for option, spec in sorted(options_of(module).items())
         if not spec.get('suboptions')
         for value in BAD.get(spec.get('type', 'str'), [])
         # 2**80 is a fine integer for ansible; only options with an upper bound refuse it (checked below)
         ]


def tree(path) -> list:
    return sorted((root, sorted(dirs), sorted(files)) for root, dirs, files in os.walk(path))


@pytest.mark.parametrize('name, option, value', CASES, ids=['%s-%s-%r' % c for c in CASES])
def test_a_hostile_value_is_refused_naming_the_option(run_main, tmp_path, name, option, value):
    before = tree(tmp_path)
    args = dict(baseline(name, tmp_path), **{option: value})
    if name == 'graceful_stop' and option in ('pid', 'pidfile', 'port', 'systemd_unit', 'exe'):
        args = {option: value}  # one target at a time
    result = run_main(MODULES[name].main, args, check=True)
    assert result.get('failed') is True, '%s accepted %s=%r: %s' % (name, option, value, result)
    assert 'exception' not in result, result['exception']
    assert option in result['msg'], result['msg']
    assert tree(tmp_path) == before, 'a refused call changed files'


def test_every_module_is_covered():
    assert {name for name, dummy, dummy2 in CASES} == set(MODULES)
    assert len(CASES) > 60


PATH_CASES = [(name, option)
              for name, module in MODULES.items()
              for option, spec in sorted(options_of(module).items())
              if spec.get('type') == 'path']


@pytest.mark.parametrize('name, option', PATH_CASES, ids=['%s-%s' % c for c in PATH_CASES])
def test_a_link_that_cannot_be_followed_is_refused(run_main, tmp_path, monkeypatch, name, option):
    """A path through a symbolic link the module may not read (``/proc/1/exe`` without ptrace rights: EACCES) is a
    refusal or a plain answer, never an unexpected error: os.path.realpath raises there."""
    denied = tmp_path / 'denied'
    denied.symlink_to(tmp_path / 'elsewhere')
    real_readlink = os.readlink

    def readlink(path, *args, **kwargs):
        if os.fspath(path) == str(denied):
            raise PermissionError(13, 'Permission denied', os.fspath(path))
        return real_readlink(path, *args, **kwargs)

    monkeypatch.setattr(os, 'readlink', readlink)
    before = tree(tmp_path)
    args = dict(baseline(name, tmp_path), **{option: str(denied)})
    if name == 'graceful_stop' and option in ('pidfile', 'exe'):
        args = {option: str(denied)}  # one target at a time
    result = run_main(MODULES[name].main, args, check=True)
    assert 'exception' not in result, result['exception']
    assert 'unexpected error' not in result.get('msg', ''), result['msg']
    assert 'Traceback' not in result.get('msg', ''), result['msg']
    assert tree(tmp_path) == before, 'the call changed files'
    if name != 'memory_facts' and not (name == 'graceful_stop' and option == 'diagnostics_dir'):
        assert result.get('failed') is True, '%s accepted %s through an unreadable link: %s' % (name, option, result)


def test_every_path_option_is_covered():
    assert {name for name, dummy in PATH_CASES} >= {'graceful_stop', 'anqicms_config', 'backup', 'restore'}


# notify_url may carry a token: a refusal names the option and never shows the value.
TOKEN = 'T0k3n-4f1d'
HOSTILE_URLS = ['file:///etc/shadow?' + TOKEN, 'ftp://hooks/' + TOKEN, 'http://ops:' + TOKEN + '@hooks/', 'http://hooks/ ' + TOKEN,
                'http://hooks/' + TOKEN + '\r\nX-Injected: 1', 'http://hooks:70000/' + TOKEN, 'http:///' + TOKEN, TOKEN, '',
                'http://hooks/' + TOKEN + '\x00', 'http://hooks/' + TOKEN * 400]
RECORDING = dict(MODULES, action_record=action_record)
URL_CASES = [(name, url) for name, module in sorted(RECORDING.items()) if 'notify_url' in options_of(module) for url in HOSTILE_URLS]


@pytest.mark.parametrize('name, url', URL_CASES, ids=['%s-%d' % (c[0], i) for i, c in enumerate(URL_CASES)])
def test_a_hostile_notify_url_is_refused_without_showing_it(run_main, tmp_path, name, url):
    before = tree(tmp_path)
    result = run_main(RECORDING[name].main, dict(baseline(name, tmp_path), notify_url=url))
    assert result.get('failed') is True, '%s accepted notify_url: %s' % (name, result)
    assert 'exception' not in result, result['exception']
    assert 'notify_url' in result['msg'], result['msg']
    assert TOKEN not in str(result), result
    assert tree(tmp_path) == before, 'a refused call changed files'


def test_every_module_that_acts_records():
    assert {name for name, dummy in URL_CASES} == {'graceful_stop', 'backup', 'restore', 'action_record'}
    for name in ('graceful_stop', 'backup', 'restore'):
        assert {'record', 'notify_url', 'record_reason'} <= set(options_of(RECORDING[name])), name
