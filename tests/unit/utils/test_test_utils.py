# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared test helpers of tests/utils: waiting, ports, the private MariaDB, the Ansible runner, the module harness."""
from __future__ import annotations

import json
import os
import socket
import stat
import time

import pytest
from hypothesis import given, settings, strategies as st

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.opsguard.anqicms.tests.utils import ansible_runner, lab, mariadb, module_harness, ports, wait


# ---------------------------------------------------------------- wait


def test_poll_returns_the_first_truthy_value_without_waiting_longer():
    values = iter([0, None, 'ready', 'later'])
    start = time.monotonic()
    assert wait.poll(lambda: next(values), timeout=5, interval=0.01) == 'ready'
    assert time.monotonic() - start < 1


def test_poll_returns_the_last_falsy_value_after_the_timeout():
    calls = []
    start = time.monotonic()
    assert wait.poll(lambda: calls.append(1) or [], timeout=0.2, interval=0.05) == []
    assert time.monotonic() - start >= 0.2
    assert len(calls) >= 2


def test_wait_for_fails_naming_what_it_waited_for():
    with pytest.raises(AssertionError, match='timed out after 0.1 s waiting for the socket'):
        wait.wait_for(lambda: False, timeout=0.1, interval=0.02, what='the socket')


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=0, max_value=5))
def test_wait_for_returns_the_value_once_the_condition_holds(falsy_calls):
    values = iter([0] * falsy_calls + [falsy_calls + 1])
    assert wait.wait_for(lambda: next(values), timeout=5, interval=0.001) == falsy_calls + 1


# ---------------------------------------------------------------- ports


def test_free_port_can_be_bound_and_answers_only_while_listening():
    port = ports.free_port()
    assert 1 <= port <= 65535
    assert not ports.port_answers(port, timeout=0.5)
    with socket.socket() as server:
        server.bind(('127.0.0.1', port))
        server.listen(1)
        assert ports.port_answers(port, timeout=0.5)


# ---------------------------------------------------------------- private MariaDB (no server started here)


def test_private_mariadb_paths_and_port(tmp_path):
    db = mariadb.PrivateMariaDB(str(tmp_path / 'db'), extra_args=['--max-connections=50'])
    assert db.socket == str(tmp_path / 'db' / 'mysqld.sock') and db.datadir == str(tmp_path / 'db' / 'data')
    assert db.tmpdir == str(tmp_path / 'db' / 'tmp')
    assert 1 <= db.port <= 65535 and db.extra_args == ['--max-connections=50']
    assert mariadb.PrivateMariaDB(str(tmp_path), port=3307).port == 3307


def test_private_mariadb_script_usage_and_stop_of_nothing(tmp_path, capsys):
    assert mariadb.main(['restart', str(tmp_path)]) == 2
    assert 'usage' in capsys.readouterr().err
    base = tmp_path / 'db'
    base.mkdir()
    (base / 'mariadbd.pid').write_text('%d\n' % os.getpid())  # not a mariadbd: never signalled
    assert mariadb.main(['stop', str(base)]) == 0
    assert not base.exists()


# ---------------------------------------------------------------- Ansible runner


def test_private_file_is_owner_only_and_removed(tmp_path):
    with ansible_runner.private_file(tmp_path, 'vars-', '.json', '{"secret": 1}') as path:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(path, encoding='utf-8') as handle:
            assert json.load(handle) == {'secret': 1}
    assert not os.path.exists(path)


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.from_regex(r'[a-z][a-z0-9.-]{0,15}', fullmatch=True),
                       st.fixed_dictionaries({k: st.integers(0, 999) for k in ('ok', 'changed', 'unreachable', 'failed')}),
                       max_size=4))
def test_recap_reads_every_host_line(hosts):
    lines = ['%-20s : ok=%d    changed=%d    unreachable=%d    failed=%d    skipped=0    rescued=0    ignored=0'
             % (host, c['ok'], c['changed'], c['unreachable'], c['failed']) for host, c in hosts.items()]
    assert ansible_runner.recap('PLAY RECAP ****\n' + '\n'.join(lines) + '\n') == hosts


def test_json_report_after_warnings_and_host_result():
    report = {'plays': [{'tasks': [{'hosts': {'node1': {'changed': True, 'rc': 0}}}]}]}
    output = '[WARNING]: something\n' + json.dumps(report)
    assert ansible_runner.json_report(output) == report
    assert ansible_runner.host_result(report, 'node1') == {'changed': True, 'rc': 0}
    assert ansible_runner.host_result(report, 'node2') is None
    assert ansible_runner.json_report('no JSON here') is None
    assert ansible_runner.host_result(None, 'node1') is None


def test_run_play_on_localhost(tmp_path):
    try:
        ansible_runner.tool('ansible-playbook')
    except FileNotFoundError:
        pytest.skip('ansible-playbook is not installed here')
    inventory = tmp_path / 'hosts'
    inventory.write_text('localhost ansible_connection=local\n', encoding='utf-8')
    env = dict(os.environ, ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'))
    play = [{'hosts': 'localhost', 'gather_facts': False,
             'tasks': [{'name': 'answer', 'ansible.builtin.set_fact': {'answer': 42}}]}]
    proc, report = ansible_runner.run_play(play, str(inventory), env, tmp_path, timeout=300)
    if report is None and 'ansible.posix.json' in proc.stdout + proc.stderr:
        pytest.skip('the ansible.posix collection (json callback) is not installed here')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ansible_runner.host_result(report, 'localhost')['ansible_facts'] == {'answer': 42}
    assert list(tmp_path.glob('play-*')) == []


# ---------------------------------------------------------------- module harness


def _fake_module_main():
    module = AnsibleModule(argument_spec={'size': {'type': 'int', 'required': True}}, supports_check_mode=True)
    if module.params['size'] < 0:
        module.fail_json(msg='size must not be negative, got %d' % module.params['size'])
    module.exit_json(changed=not module.check_mode, size=module.params['size'], diff_mode=module._diff)


@pytest.mark.parametrize('check', [False, True])
@pytest.mark.parametrize('diff', [False, True])
def test_run_module_main_returns_exit_json(check, diff):
    result = module_harness.run_module_main(_fake_module_main, {'size': 3}, check=check, diff=diff)
    assert result['size'] == 3 and result['changed'] is (not check) and result['diff_mode'] is diff


def test_run_module_main_returns_fail_json():
    result = module_harness.run_module_main(_fake_module_main, {'size': -1})
    assert result['failed'] and result['msg'] == 'size must not be negative, got -1'


def test_run_module_main_lets_a_crash_raise():
    def crashing_main():
        raise ZeroDivisionError('boom')

    with pytest.raises(ZeroDivisionError):
        module_harness.run_module_main(crashing_main, {})


def test_run_module_process_runs_a_collection_module(tmp_path):
    path = tmp_path / 'config.json'
    result = module_harness.run_module_process('anqicms_config', {'path': str(path), 'server': {'port': 8001}},
                                               check=True, tmp=tmp_path)
    assert result['changed'] is True, result
    assert not path.exists()
    assert list(tmp_path.glob('args-*')) == []


# ---------------------------------------------------------------- lab fixtures (a stand-in for tests/lab/fleet.py)


class _FakeFleetModule:
    def __init__(self):
        self.calls = []

    def up(self, hosts, memory, name, image):
        self.calls.append(('up', hosts, memory, name, image))
        return 'fleet %s' % name

    def down(self, name):
        self.calls.append(('down', name))


def test_running_fleet_is_torn_down_after_the_block():
    fake = _FakeFleetModule()
    with lab.running_fleet(2, '512M', 'utl', lab=fake) as running:
        assert running == 'fleet utl'
        assert fake.calls == [('up', 2, '512M', 'utl', 'machine')]
    assert fake.calls[-1] == ('down', 'utl')


def test_running_fleet_is_torn_down_after_a_failure():
    fake = _FakeFleetModule()
    with pytest.raises(RuntimeError, match='test failed'):
        with lab.running_fleet(1, None, 'utl', lab=fake):
            raise RuntimeError('test failed')
    assert fake.calls == [('up', 1, None, 'utl', 'machine'), ('down', 'utl')]


def test_running_fleet_passes_the_image_on():
    fake = _FakeFleetModule()
    with lab.running_fleet(2, None, 'utl', lab=fake, image='fresh'):
        assert fake.calls == [('up', 2, None, 'utl', 'fresh')]
