# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The monitor role's pass script, run as its timer runs it: a plain ``python3 -I -S`` over a private, byte-compiled
copy of the module_utils (no Ansible importable), against this machine's real /proc, writing into a temporary
directory; its output is parsed strictly as node_exporter's textfile collector would."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.exposition_parser import parse, value

ROOT = pathlib.Path(__file__).resolve().parents[3]
ROLE = ROOT / 'roles' / 'monitor'
SCRIPT = ROLE / 'files' / 'opsguard-watch.py'
ROLE_VARS = yaml.safe_load((ROLE / 'vars' / 'main.yml').read_text(encoding='utf-8'))


def install(tmp_path: pathlib.Path) -> pathlib.Path:
    """What tasks/watcher.yml puts on a host: the script, lib/ with package markers and the pass's module_utils."""
    home = tmp_path / 'opsguard-watch'
    lib = home / 'lib'
    for package in ROLE_VARS['_monitor_package_dirs']:
        (lib / package).mkdir(parents=True, exist_ok=True)
        (lib / package / '__init__.py').write_text('')
    for name in ROLE_VARS['_monitor_pass_modules']:
        shutil.copy(ROOT / 'plugins' / 'module_utils' / (name + '.py'), lib / 'ansible_collections/opsguard/anqicms/plugins/module_utils')
    shutil.copy(SCRIPT, home / 'opsguard-watch.py')
    subprocess.run([sys.executable, '-m', 'compileall', '-q', str(lib)], check=True)
    return home


def run(home: pathlib.Path, config: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-I', '-S', str(home / 'opsguard-watch.py'), str(config)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_pass_script_writes_metrics_and_trend_state(tmp_path):
    home = install(tmp_path)
    out = tmp_path / 'textfile'
    state = tmp_path / 'state'
    out.mkdir()
    state.mkdir()
    config = tmp_path / 'watch.json'
    config.write_text(json.dumps({'textfile': str(out / 'opsguard.prom'), 'state_file': str(state / 'opsguard.state.json'),
                                  'leak_mib_per_minute': 4,
                                  'cgroup': '/', 'matchers': [{'name': 'pytest-runner', 'kind': 'redis', 'process_name': ['python*', 'pytest*']}]}))
    first = run(home, config)
    assert first.returncode == 0, first.stderr
    assert first.stdout == '' and first.stderr == ''
    families = parse((out / 'opsguard.prom').read_text(encoding='utf-8'))
    for name in ('opsguard_memory_limit_bytes', 'opsguard_memory_available_bytes', 'opsguard_memory_verdict',
                 'opsguard_collector_last_success_timestamp_seconds', 'opsguard_service_memory_bytes'):
        assert families[name]['samples'], name
    assert value(families, 'opsguard_memory_available_bytes') > 0
    assert sum(v for _labels, v in families['opsguard_memory_verdict']['samples']) == 1
    # the user's matcher is applied (this test's own interpreter is a python process; kind redis: exported)
    assert any(labels.get('service') == 'pytest-runner' for labels, _v in families['opsguard_service_memory_bytes']['samples'])
    saved = json.loads((state / 'opsguard.state.json').read_text(encoding='utf-8'))
    assert saved  # the trend state the next pass starts from
    stamp = value(families, 'opsguard_collector_last_success_timestamp_seconds')
    second = run(home, config)
    assert second.returncode == 0, second.stderr
    again = parse((out / 'opsguard.prom').read_text(encoding='utf-8'))
    assert value(again, 'opsguard_collector_last_success_timestamp_seconds') >= stamp
    assert sorted(p.name for p in out.iterdir()) == ['opsguard.prom']  # no temporary file left behind
    # the pass imported the byte-compiled tree: every module has its .pyc, the script wrote no new one
    compiled = sorted(p.name.split('.')[0] for p in home.rglob('module_utils/__pycache__/*.pyc'))
    assert compiled == sorted(['__init__'] + ROLE_VARS['_monitor_pass_modules'])


@pytest.mark.parametrize('config, fragment', [
    ({'textfile': 'relative.prom'}, 'textfile=relative.prom: give an absolute path'),
    ({'textfile': '/nonexistent-dir/opsguard.prom'}, 'directory /nonexistent-dir does not exist'),
    ({'textfile': '/tmp/opsguard.txt'}, 'must end in .prom'),
    ({'textfile': '/tmp/x.prom', 'leak_mib_per_minute': 0}, 'leak_mib_per_minute must be a number above 0'),
    ({'textfile': '/tmp/x.prom', 'matchers': [{'name': 'bad'}]}, 'matcher bad matches nothing'),
    ([], 'expected a JSON object with textfile'),
    ({'textfile': '/tmp/x.prom', 'cgroup': '/no/such/cgroup-of-opsguard'}, 'cgroup /no/such/cgroup-of-opsguard does not exist'),
])
def test_a_bad_configuration_stops_with_status_2_and_writes_nothing(tmp_path, config, fragment):
    home = install(tmp_path)
    path = tmp_path / 'watch.json'
    path.write_text(json.dumps(config))
    done = run(home, path)
    assert done.returncode == 2
    assert fragment in done.stderr
    assert not pathlib.Path('/tmp/x.prom').exists()


def test_a_missing_configuration_is_named(tmp_path):
    home = install(tmp_path)
    done = run(home, tmp_path / 'absent.json')
    assert done.returncode == 2 and 'absent.json' in done.stderr
