# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Event-Driven Ansible: the collection's rulebook and Alertmanager source in a real ansible-rulebook (Java, Drools).

ansible-rulebook runs ``opsguard.anqicms.memory_remediation`` from the installed collection (``.collections``) with its
``opsguard.anqicms.alertmanager`` source on a free loopback port and a bearer token from the environment. The
playbook variables point the recycle and diagnose actions at two recording playbooks (localhost) that append the
variables they received to a file. Alertmanager's webhook payloads are POSTed as Alertmanager sends them:

- a firing critical alert about an AnQiCMS instance runs the recycle playbook once, with ``host:install_dir``;
- another critical alert about the same instance within the throttle window runs nothing;
- a resolved alert runs nothing; a critical host alert and a critical MariaDB alert run diagnose for their host;
- with the kill-switch file present the source answers ``paused`` and nothing runs; without it, it runs again;
- a wrong token gets 401 and runs nothing.

The rulebook's source arguments are also rendered with and without its variables, as ansible-rulebook renders them,
and checked by the source: listening on every address, the token required from the environment by default.

"Nothing ran" is proved without waiting on a clock: after the alert under test comes a sentinel alert for another
instance, which does run; ansible-rulebook handles events in order and runs actions one after the other
(sequential strategy), so once the sentinel's record is there, anything the earlier alert started would be too.
No test fleet: everything runs on this machine, as the user running the tests.
"""
from __future__ import annotations

import itertools
import json
import os
import pathlib
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest
import yaml
from ansible_rulebook.util import substitute_variables

from ansible_collections.opsguard.anqicms.extensions.eda.plugins.event_source import alertmanager
from ansible_collections.opsguard.anqicms.tests.utils.java import java_home as shared_java_home
from ansible_collections.opsguard.anqicms.tests.utils.ports import free_port, port_answers
from ansible_collections.opsguard.anqicms.tests.utils.processes import stop_session
from ansible_collections.opsguard.anqicms.tests.utils.wait import wait_for

REPO = pathlib.Path(__file__).resolve().parents[2]
RULEBOOK = REPO / 'extensions' / 'eda' / 'rulebooks' / 'memory_remediation.yml'
VENV_BIN = pathlib.Path(sys.executable).parent
TOKEN = 'eda-test-token-5b1f0c'
START_TIMEOUT = 240    # JVM + Drools start; several times the idle time, for a loaded machine
ACTION_TIMEOUT = 240   # one playbook run through ansible-runner

RECORDING_PLAYBOOK = """\
- name: Record what the rulebook passed ({name})
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Append the variables to the record file
      ansible.builtin.shell:
        cmd: printf '%s\\n' {{{{ record | to_json | quote }}}} >> {path}
      vars:
        record:
          playbook: {name}
          opsguard_instances: "{{{{ opsguard_instances | default(none) }}}}"
          opsguard_target: "{{{{ opsguard_target | default(none) }}}}"
          rule: "{{{{ ansible_eda.rule }}}}"
          alertname: "{{{{ ansible_eda.event.alert.labels.alertname }}}}"
"""


def java_home() -> str:
    """The JVM for ansible-rulebook (tests/utils/java.py); without one the test fails saying what to install."""
    try:
        return shared_java_home()
    except RuntimeError as exc:
        pytest.fail(str(exc))


class Rulebook:
    """A running ansible-rulebook with the collection's rulebook, and what its playbooks recorded."""

    def __init__(self, work: pathlib.Path) -> None:
        self.work = work
        self.port = free_port()
        self.records = work / 'records.jsonl'
        self.pause_file = work / 'eda-paused'
        self.log = work / 'ansible-rulebook.log'
        self.sentinels = itertools.count(1)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        for name in ('recycle', 'diagnose'):
            (self.work / f'record_{name}.yml').write_text(RECORDING_PLAYBOOK.format(name=name, path=self.records))
        (self.work / 'vars.yml').write_text(json.dumps({
            'opsguard_eda_host': '127.0.0.1',
            'opsguard_eda_port': self.port,
            'opsguard_eda_pause_file': str(self.pause_file),
            'opsguard_recycle_playbook': str(self.work / 'record_recycle.yml'),
            'opsguard_diagnose_playbook': str(self.work / 'record_diagnose.yml'),
        }))
        # Like a fleet's inventory: no localhost in it. The recording playbooks, like the collection's, run their
        # play on the implicit localhost, which the rulebook's --limit must not leave out.
        (self.work / 'inventory').write_text(
            f'[app]\nnode1 ansible_connection=local ansible_python_interpreter={sys.executable}\n')
        env = dict(os.environ, JAVA_HOME=java_home(), OPSGUARD_EDA_TOKEN=TOKEN,
                   ANSIBLE_COLLECTIONS_PATH=str(REPO / '.collections'),
                   PATH=f'{VENV_BIN}{os.pathsep}{os.environ.get("PATH", "")}', ANSIBLE_NOCOLOR='1')
        with open(self.log, 'wb') as log:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / 'ansible-rulebook'), '-r', 'opsguard.anqicms.memory_remediation',
                 '-i', str(self.work / 'inventory'), '-e', str(self.work / 'vars.yml')],
                cwd=self.work, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        wait_for(lambda: port_answers(self.port) or self.proc.poll() is not None, START_TIMEOUT,
                 f'ansible-rulebook listening on port {self.port}')
        assert self.proc.poll() is None, f'ansible-rulebook exited: {self.log_text()}'

    def stop(self) -> None:
        stop_session(self.proc)

    def log_text(self) -> str:
        return self.log.read_text(errors='replace')[-4000:]

    def recorded(self) -> list[dict[str, Any]]:
        if not self.records.exists():
            return []
        return [json.loads(line) for line in self.records.read_text().splitlines() if line.strip()]

    def post(self, document: dict[str, Any], token: str = TOKEN) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f'http://127.0.0.1:{self.port}/alerts', data=json.dumps(document).encode(), method='POST',
            headers={'Content-Type': 'application/json', 'Authorization': f'Bearer {token}'})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def records_up_to_sentinel(self, before: int) -> list[dict[str, Any]]:
        """POST a sentinel alert that runs the recycle playbook; the records after ``before``, sentinel excluded."""
        directory = f'/srv/anqicms/sentinel{next(self.sentinels)}'
        assert self.post(webhook(alert(instance='sentinel:9100', service=f'anqicms:{directory}'))) == (
            200, {'accepted': 1})
        expected = ['sentinel:' + directory]
        wait_for(lambda: any(r['opsguard_instances'] == expected for r in self.recorded()[before:]),
                 ACTION_TIMEOUT, f'the sentinel recycle of {directory} (log: {self.log})')
        new = self.recorded()[before:]
        assert new[-1]['opsguard_instances'] == expected, f'records after the sentinel: {new}'
        return new[:-1]


def alert(status: str = 'firing', alertname: str = 'OpsguardServiceLeakCritical', severity: str = 'critical',
          instance: str = 'node2:9100', service: str | None = 'anqicms:/srv/anqicms/site1') -> dict[str, Any]:
    labels = {'alertname': alertname, 'severity': severity, 'instance': instance, 'job': 'node'}
    if service:
        labels.update(service=service, unit='anqicms-site1.service' if service.startswith('anqicms:') else 'x.service')
    return {'status': status, 'labels': labels, 'annotations': {'summary': f'{alertname} on {instance}'},
            'startsAt': '2026-11-29T10:00:00Z', 'endsAt': '0001-01-01T00:00:00Z',
            'generatorURL': 'http://prometheus:9090/graph', 'fingerprint': f'{abs(hash(json.dumps(labels))):x}'}


def webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {'version': '4', 'groupKey': '{}:{}', 'truncatedAlerts': 0, 'status': alerts[0]['status'],
            'receiver': 'opsguard-eda', 'groupLabels': {}, 'commonLabels': {}, 'commonAnnotations': {},
            'externalURL': 'http://alertmanager:9093', 'alerts': list(alerts)}


@pytest.fixture(scope='module')
def rulebook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rulebook]:
    running = Rulebook(tmp_path_factory.mktemp('eda'))
    try:
        running.start()
        yield running
    finally:
        running.stop()


def test_a_critical_anqicms_alert_recycles_that_instance_once(rulebook):
    assert rulebook.post(webhook(alert())) == (200, {'accepted': 1})
    wait_for(rulebook.recorded, ACTION_TIMEOUT, f'the recycle playbook run (log: {rulebook.log})')
    (record,) = rulebook.recorded()
    assert record == {'playbook': 'recycle', 'opsguard_instances': ['node2:/srv/anqicms/site1'],
                      'opsguard_target': None,
                      'rule': 'Recycle the AnQiCMS instance that is running out of memory',
                      'alertname': 'OpsguardServiceLeakCritical'}


def test_a_second_critical_alert_for_the_instance_within_the_window_runs_nothing(rulebook):
    before = len(rulebook.recorded())
    assert rulebook.post(webhook(alert(alertname='OpsguardServiceNearLimitCritical'))) == (200, {'accepted': 1})
    assert rulebook.records_up_to_sentinel(before) == []


def test_resolved_and_warning_alerts_run_nothing(rulebook):
    before = len(rulebook.recorded())
    accepted = rulebook.post(webhook(alert(status='resolved', instance='node4:9100'),
                                     alert(status='resolved', instance='node4:9100', alertname='OpsguardServiceLeak'),
                                     alert(status='firing', instance='node5:9100', severity='warning')))
    assert accepted == (200, {'accepted': 3})
    assert rulebook.records_up_to_sentinel(before) == []
    assert 'OpsguardServiceLeakCritical resolved (node4)' in rulebook.log.read_text()


def test_host_and_other_service_alerts_run_diagnose_for_their_host(rulebook):
    before = len(rulebook.recorded())
    host_alert = alert(alertname='OpsguardHostMemoryCritical', instance='10.0.0.13:9100', service=None)
    mariadb = alert(alertname='OpsguardServiceNearLimitCritical', instance='[2001:db8::14]:9100', service='mariadb')
    assert rulebook.post(webhook(host_alert, mariadb)) == (200, {'accepted': 2})
    records = rulebook.records_up_to_sentinel(before)
    assert [(r['playbook'], r['opsguard_target'], r['opsguard_instances']) for r in records] == [
        ('diagnose', '10.0.0.13', None), ('diagnose', '2001:db8::14', None)]
    assert 'diagnosed, nothing stopped' in rulebook.log.read_text()


def test_the_kill_switch_file_stops_every_action(rulebook):
    before = len(rulebook.recorded())
    rulebook.pause_file.touch()
    try:
        answer = rulebook.post(webhook(alert(instance='node6:9100'),
                                       alert(alertname='OpsguardHostMemoryCritical', instance='node7:9100',
                                             service=None)))
        assert answer == (200, {'accepted': 0, 'paused': True})
    finally:
        rulebook.pause_file.unlink()
    assert rulebook.records_up_to_sentinel(before) == []
    assert 'remediation paused' in rulebook.log.read_text()


def test_a_wrong_token_is_refused_and_runs_nothing(rulebook):
    before = len(rulebook.recorded())
    assert rulebook.post(webhook(alert(instance='node8:9100')), token='not-the-token') == (
        401, {'error': 'a valid bearer token is required'})
    assert rulebook.records_up_to_sentinel(before) == []
    assert rulebook.proc.poll() is None


def _source_settings(variables: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """The source's settings from the rulebook's source arguments, rendered as ansible-rulebook renders them."""
    (ruleset,) = yaml.safe_load(RULEBOOK.read_text())
    (source,) = ruleset['sources']
    args = substitute_variables(source['opsguard.anqicms.alertmanager'], variables)
    return alertmanager.parse_args(args, environ=environ)


def test_the_rulebook_defaults_listen_everywhere_and_require_the_token():
    settings = _source_settings({}, {'OPSGUARD_EDA_TOKEN': TOKEN})
    assert (settings['host'], settings['port'], settings['path']) == ('0.0.0.0', 5001, '/alerts')
    assert settings['token'] == TOKEN.encode() and settings['enabled'] is True
    assert settings['pause_file'] == '/var/lib/opsguard/eda-paused'
    with pytest.raises(ValueError, match='export OPSGUARD_EDA_TOKEN'):
        _source_settings({}, {})


def test_the_rulebook_variables_reach_the_source():
    settings = _source_settings({'opsguard_remediation_enabled': False, 'opsguard_eda_require_token': False,
                                 'opsguard_eda_port': 6123, 'opsguard_eda_pause_file': '/run/eda-off'}, {})
    assert (settings['enabled'], settings['token'], settings['port'], settings['pause_file']) == (
        False, None, 6123, '/run/eda-off')
