# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database role's two drop-ins, rendered by ansible's template module and read back by MariaDB's own tools.

The templates only render what the filter opsguard.anqicms.mariadb_drop_ins decided; here they are rendered on this machine
(local connection) into a private include directory next to a copy of Debian's 50-server.cnf settings, and
``my_print_defaults`` / ``mariadbd --help --verbose`` (the mariadb-server of hacking/apt-packages.txt) read them: every
extra value comes back exactly as given, and the extra drop-in wins over the sized one and over 50-server.cnf.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / '.collections'))
from ansible_collections.opsguard.anqicms.plugins.filter import sizing  # noqa: E402  pylint: disable=wrong-import-position

TEMPLATES = ROOT / 'roles' / 'database' / 'templates'
DYNAMIC = {'max_connections': 80, 'innodb_buffer_pool_size': 134217728, 'sort_buffer_size': 262144}
STATIC = {'performance_schema': 'OFF', 'thread_stack': 299008}
# Values an option file can get wrong: '#' (a comment when bare), quotes, backslashes, blanks at either end, empty,
# brackets and '=', non-ASCII; plus numbers and flags.
EXTRA = {
    'bind-address': '0.0.0.0',
    'Max-Connections': 123,
    'init_connect': "SET NAMES utf8mb4 # app's 'quoted' \"x\"",
    'log_error': '/var/log/mysql/a b\\c\\n"q".err',
    'ssl_ca': '',
    'ssl_cipher': ' DHE-RSA-AES256-SHA ',
    'character_set_server': 'utf8mb4',
    'general_log_file': '/var/log/mysql/Zürich [x] = y.log',
    'skip_name_resolve': True,
    'long_query_time': 2.5,
}

# Values for my_print_defaults alone (mariadbd would refuse most of them as init_connect).
AWKWARD = ['#', '"', "'", '\\', '\\\\"', ' # ', '"#"', "'x'", 'a\\', '\\n', '\\s', '=', '[mysqld]', '!include /x', ';x', 'é ü', '', ' ',
           'x' * 3980]


def canonical(name: str) -> str:
    return name.replace('-', '_').lower()


def render(tmp_path: pathlib.Path, *cases: dict) -> list[tuple[pathlib.Path, dict]]:
    """Render both templates with ansible's template module (one run) into tmp_path/<n>/conf.d, one directory per case.

    Each directory also holds Debian's 50-server.cnf settings; returns each case's my.cnf and the filter's split.
    """
    tasks, variables, out = [], {}, []
    for number, extra in enumerate(cases):
        conf = tmp_path / str(number) / 'conf.d'
        conf.mkdir(parents=True)
        (conf / '50-server.cnf').write_text('[mysqld]\nbind-address = 127.0.0.1\nmax_connections = 151\n', encoding='utf-8')
        (conf.parent / 'my.cnf').write_text(f'[mysqld]\nskip-grant-tables\n!includedir {conf}/\n', encoding='utf-8')
        sized_path, extra_path = conf / '60-anqicms.cnf', conf / '61-anqicms-extra.cnf'
        split = sizing.mariadb_drop_ins(extra, dynamic=DYNAMIC, static=STATIC, config_path=str(sized_path),
                                        extra_config_path=str(extra_path))
        variables[f'case{number}'] = {'_database_drop_ins': split, 'database_config_path': str(sized_path),
                                      'database_extra_config_path': str(extra_path)}
        for template, dest in (('anqicms.cnf.j2', sized_path), ('anqicms-extra.cnf.j2', extra_path)):
            if template == 'anqicms.cnf.j2' or split['extra']:
                tasks.append({'name': f'{number} {template}', 'vars': {key: f'{{{{ case{number}.{key} }}}}' for key in variables[f'case{number}']},
                              'ansible.builtin.template': {'src': str(TEMPLATES / template), 'dest': str(dest)}})
        out.append((conf.parent / 'my.cnf', split))
    variables.update({'database_sizing': {'sites': 3, 'memory_bytes': 375809638}, 'database_pool_per_site': 20,
                      'database_app_replicas': 1, 'database_connection_headroom': 20})
    playbook = tmp_path / 'render.yml'
    playbook.write_text(json.dumps([{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}]), encoding='utf-8')
    (tmp_path / 'vars.json').write_text(json.dumps(variables), encoding='utf-8')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / '.collections'), ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0')
    result = subprocess.run([str(pathlib.Path(sys.executable).with_name('ansible-playbook')), '-i', 'localhost,', '-c', 'local',
                             '-e', f'ansible_python_interpreter={sys.executable}', '-e', f'@{tmp_path / "vars.json"}',
                             str(playbook)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def read_options(my_cnf: pathlib.Path) -> list[tuple[str, str]]:
    """The [mysqld] options as MariaDB reads them, in reading order (my_print_defaults)."""
    out = subprocess.run(['my_print_defaults', f'--defaults-file={my_cnf}', 'mysqld'], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    options = []
    for line in out.splitlines():
        name, dummy, value = line[2:].partition('=')
        options.append((canonical(name), value))
    return options


def effective(my_cnf: pathlib.Path) -> dict[str, str]:
    """What mariadbd itself takes from the files (--help --verbose, the table of variables); fails if it rejects them."""
    result = subprocess.run(['/usr/sbin/mariadbd', f'--defaults-file={my_cnf}', '--help', '--verbose'], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    table = result.stdout.split('Variables (--variable-name=value)')[-1]
    return {canonical(parts[0]): parts[1] for parts in (line.split(None, 1) for line in table.splitlines()) if len(parts) == 2}


@pytest.fixture(scope='module')
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[pathlib.Path, dict]]:
    """The three cases of this module, rendered by one ansible-playbook run."""
    cases = {'extra': EXTRA, 'none': {}, 'awkward': {f'v{number:02d}': value for number, value in enumerate(AWKWARD)}}
    return dict(zip(cases, render(tmp_path_factory.mktemp('drop-ins'), *cases.values())))


def test_every_extra_value_reads_back_as_given_and_wins(rendered):
    my_cnf, split = rendered['extra']
    options = read_options(my_cnf)
    last = dict(options)
    for name, value in EXTRA.items():
        wanted = {True: 'ON'}.get(value, value) if isinstance(value, bool) else str(value)
        assert last[canonical(name)] == wanted, name
    assert split['replaced'] == ['max_connections']
    # The sized drop-in holds the sized settings that were not replaced, once each; the replaced one is named in a comment.
    sized = (my_cnf.parent / 'conf.d' / '60-anqicms.cnf').read_text(encoding='utf-8')
    assert [line.split(' = ')[0] for line in sized.splitlines() if ' = ' in line] == sorted(
        ['innodb_buffer_pool_size', 'sort_buffer_size', 'performance_schema', 'thread_stack'])
    assert f"# Replaced by database_extra_settings ({my_cnf.parent / 'conf.d' / '61-anqicms-extra.cnf'}): max_connections." in sized
    # 61-anqicms-extra.cnf is read after 50-server.cnf and 60-anqicms.cnf, and mariadbd takes its values.
    assert [value for name, value in options if name == 'max_connections'] == ['151', '123']
    assert [value for name, value in options if name == 'bind_address'] == ['127.0.0.1', '0.0.0.0']
    server = effective(my_cnf)
    assert (server['max_connections'], server['bind_address'], server['thread_stack']) == ('123', '0.0.0.0', '299008')
    assert server['init_connect'] == EXTRA['init_connect']


def test_the_extra_drop_in_lists_its_settings_in_name_order_one_per_line(rendered):
    my_cnf, dummy = rendered['extra']
    text = (my_cnf.parent / 'conf.d' / '61-anqicms-extra.cnf').read_text(encoding='utf-8')
    lines = text.splitlines()
    assert lines[0].startswith('#') and '[mysqld]' in lines
    settings = lines[lines.index('[mysqld]') + 1:]
    assert [line.split(' = ')[0] for line in settings] == sorted(EXTRA, key=str)
    assert 'MariaDB reads this file after 60-anqicms.cnf' in text


def test_without_extra_settings_the_sized_drop_in_holds_every_sized_setting(rendered):
    my_cnf, split = rendered['none']
    assert split['extra'] == {} and not (my_cnf.parent / 'conf.d' / '61-anqicms-extra.cnf').exists()
    sized = (my_cnf.parent / 'conf.d' / '60-anqicms.cnf').read_text(encoding='utf-8')
    assert 'Replaced by' not in sized
    last = dict(read_options(my_cnf))
    assert {name: last[name] for name in dict(DYNAMIC, **STATIC)} == {k: str(v) for k, v in dict(DYNAMIC, **STATIC).items()}
    assert last['bind_address'] == '127.0.0.1'


def test_awkward_values_read_back_as_given(rendered):
    # my_print_defaults reads any option name: one drop-in holds them all.
    my_cnf, dummy = rendered['awkward']
    options = read_options(my_cnf)
    assert [value for name, value in options if name.startswith('v')] == AWKWARD
