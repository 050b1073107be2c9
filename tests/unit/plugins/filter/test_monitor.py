# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the monitor role: the watcher's configuration, prometheus.yml and alertmanager.yml."""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import given, strategies as st
import yaml

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.filter import monitor as F

DEFAULTS_PATH = pathlib.Path(F.__file__).resolve().parents[2] / 'roles' / 'monitor' / 'defaults' / 'main.yml'
WATCH_KEYS = ('monitor_interval', 'monitor_accuracy', 'monitor_cpu_weight', 'monitor_memory_max',
              'monitor_leak_mib_per_minute', 'monitor_textfile_dir', 'monitor_textfile_name', 'monitor_state_dir',
              'monitor_matchers')


def defaults() -> dict:
    data = yaml.safe_load(DEFAULTS_PATH.read_text(encoding='utf-8'))
    return {key: data[key] for key in WATCH_KEYS}


def test_the_filters_are_registered_under_their_names():
    assert set(F.FilterModule().filters()) == {'monitor_watch_config', 'monitor_prometheus_config',
                                               'monitor_alertmanager_config', 'monitor_default_targets'}


def test_the_role_defaults_give_the_watcher_configuration():
    result = F.monitor_watch_config(defaults())
    assert result == {
        'config': {'textfile': '/var/lib/prometheus/node-exporter/opsguard.prom',
                   'state_file': '/var/lib/opsguard-watch/opsguard.state.json', 'leak_mib_per_minute': 4, 'matchers': [],
                   'cgroup': '/'},
        'interval': 10, 'accuracy': 1, 'memory_max': 64 * 1024 ** 2, 'cpu_weight': 20,
        'read_write_paths': ['/var/lib/opsguard-watch', '/var/lib/prometheus/node-exporter'],
    }


def test_matchers_are_passed_on_and_one_directory_is_named_once():
    options = dict(defaults(), monitor_state_dir='/var/lib/prometheus/node-exporter/',
                   monitor_matchers=[{'name': 'shop', 'unit': ['shop.service']}])
    result = F.monitor_watch_config(options)
    assert result['config']['matchers'] == [{'name': 'shop', 'unit': ['shop.service']}]
    assert result['read_write_paths'] == ['/var/lib/prometheus/node-exporter']
    assert result['config']['state_file'] == '/var/lib/prometheus/node-exporter/opsguard.state.json'


@pytest.mark.parametrize('key, value, fragment', [
    ('monitor_interval', 0, 'monitor_interval=0: give a whole number from 1 to 3600'),
    ('monitor_interval', True, 'monitor_interval=true'),
    ('monitor_accuracy', 11, 'monitor_accuracy=11 is larger than monitor_interval=10'),
    ('monitor_cpu_weight', 0, 'monitor_cpu_weight=0'),
    ('monitor_memory_max', '16M', 'monitor_memory_max="16M": give a systemd size of at least 32M'),
    ('monitor_memory_max', '64 MB', 'monitor_memory_max="64 MB"'),
    ('monitor_leak_mib_per_minute', 0, 'monitor_leak_mib_per_minute=0'),
    ('monitor_textfile_dir', 'relative/dir', 'monitor_textfile_dir="relative/dir": give an absolute directory path'),
    ('monitor_textfile_dir', '/', 'monitor_textfile_dir="/"'),
    ('monitor_state_dir', '/var/lib/x\ny', 'monitor_state_dir="/var/lib/x\\ny"'),
    ('monitor_textfile_name', 'opsguard.txt', 'monitor_textfile_name="opsguard.txt": give a file name'),
    ('monitor_textfile_name', '../x.prom', 'monitor_textfile_name="../x.prom"'),
    ('monitor_matchers', [{'name': 'x'}], 'monitor_matchers: matcher x matches nothing'),
    ('monitor_matchers', [{'name': 'x', 'cmdline': '('}], 'monitor_matchers: '),
])
def test_bad_watcher_options_are_refused_naming_the_option(key, value, fragment):
    with pytest.raises(AnsibleFilterError) as caught:
        F.monitor_watch_config(dict(defaults(), **{key: value}))
    assert fragment in str(caught.value)
    assert str(caught.value).startswith('The monitor role refuses its options: ')


def test_all_problems_are_named_at_once():
    with pytest.raises(AnsibleFilterError) as caught:
        F.monitor_watch_config(dict(defaults(), monitor_interval=-1, monitor_textfile_name='x'))
    assert 'monitor_interval=-1' in str(caught.value) and 'monitor_textfile_name="x"' in str(caught.value)


def test_prometheus_config_labels_each_target_with_its_host():
    hostvars = {'node1': {'ansible_host': '10.0.0.11'}, 'node2': {'ansible_host': 'fd00::2'}, 'db6': {}}
    targets = F.monitor_default_targets(['node1', 'node2', 'db6'], hostvars, 9100)
    assert targets == [{'target': '10.0.0.11:9100', 'host': 'node1'}, {'target': '[fd00::2]:9100', 'host': 'node2'},
                       {'target': 'db6:9100', 'host': 'db6'}]
    config = F.monitor_prometheus_config(targets + ['extra.example.com:9101', 'plain'], 5, 5)
    assert config['global'] == {'scrape_interval': '5s', 'evaluation_interval': '5s', 'scrape_timeout': '5s'}
    assert config['rule_files'] == ['/etc/prometheus/opsguard.rules.yml']
    assert config['alerting'] == {'alertmanagers': [{'static_configs': [{'targets': ['localhost:9093']}]}]}
    assert config['scrape_configs'] == [{'job_name': 'node', 'static_configs': [
        {'targets': ['10.0.0.11:9100'], 'labels': {'host': 'node1'}},
        {'targets': ['[fd00::2]:9100'], 'labels': {'host': 'node2'}},
        {'targets': ['db6:9100'], 'labels': {'host': 'db6'}},
        {'targets': ['extra.example.com:9101'], 'labels': {'host': 'extra.example.com'}},
        {'targets': ['plain:9100'], 'labels': {'host': 'plain'}}]}]


@pytest.mark.parametrize('targets, scrape, fragment', [
    ([], 15, 'monitor_prometheus_targets=[]: give a non-empty list'),
    (['a b:9100'], 15, 'target "a b:9100": give host:port'),
    (['host:99999'], 15, 'target "host:99999"'),
    (['h:1', 'h:1'], 15, 'target h:1 is listed twice'),
    ([{'target': 'h:1', 'host': 'x\ny'}], 15, 'host label "x\\ny"'),
    (['h:1'], 0, 'monitor_scrape_interval=0'),
])
def test_bad_prometheus_options_are_refused(targets, scrape, fragment):
    with pytest.raises(AnsibleFilterError) as caught:
        F.monitor_prometheus_config(targets, scrape, 15)
    assert fragment in str(caught.value)


def test_alertmanager_config_with_and_without_a_webhook():
    bare = F.monitor_alertmanager_config('', 30, '4h')
    assert bare['receivers'] == [{'name': 'opsguard'}]
    assert bare['route'] == {'receiver': 'opsguard', 'group_by': ['alertname', 'instance', 'service'],
                             'group_wait': '30s', 'group_interval': '1m', 'repeat_interval': '4h',
                             'routes': [{'matchers': ['severity="critical"'], 'group_wait': '1s'}]}
    hooked = F.monitor_alertmanager_config('https://hooks.example.com/alert?token=s3cret', 0, '30m')
    assert hooked['receivers'] == [{'name': 'opsguard', 'webhook_configs': [
        {'url': 'https://hooks.example.com/alert?token=s3cret', 'send_resolved': True}]}]


def test_critical_alerts_have_their_own_group_wait():
    assert F.monitor_alertmanager_config('', 30, '4h', '', 0)['route']['routes'] == [
        {'matchers': ['severity="critical"'], 'group_wait': '0s'}]
    for bad in (-1, 3601, 2.5, True, 'soon', None, float('nan'), float('inf')):
        with pytest.raises(AnsibleFilterError) as caught:
            F.monitor_alertmanager_config('', 30, '4h', '', bad)
        assert 'monitor_alertmanager_critical_group_wait' in str(caught.value)


def test_a_webhook_token_becomes_a_bearer_authorization():
    hooked = F.monitor_alertmanager_config('http://eda.example.com:5001/alerts', 5, '4h', 'tok-3n.s3cret_~')
    assert hooked['receivers'] == [{'name': 'opsguard', 'webhook_configs': [
        {'url': 'http://eda.example.com:5001/alerts', 'send_resolved': True,
         'http_config': {'authorization': {'type': 'Bearer', 'credentials': 'tok-3n.s3cret_~'}}}]}]
    assert F.monitor_alertmanager_config('http://eda.example.com/', 5, '4h', None) == \
        F.monitor_alertmanager_config('http://eda.example.com/', 5, '4h', '')


@pytest.mark.parametrize('url, token, fragment', [
    ('http://eda/', 'has s3cret blank', 'printable characters without blanks'),
    ('http://eda/', 's3cret\nnewline', 'printable characters without blanks'),
    ('http://eda/', 'x' * 4097 + 's3cret', 'at most 4096'),
    ('http://eda/', 123, 'printable characters without blanks'),
    ('', 's3cret', 'monitor_alertmanager_webhook_url is empty'),
])
def test_a_bad_webhook_token_is_refused_without_showing_it(url, token, fragment):
    with pytest.raises(AnsibleFilterError) as caught:
        F.monitor_alertmanager_config(url, 30, '4h', token)
    assert fragment in str(caught.value) and 'monitor_alertmanager_webhook_token' in str(caught.value)
    assert 's3cret' not in str(caught.value)


@given(st.text(max_size=64))
def test_any_token_is_refused_or_passed_through_unchanged(token):
    try:
        config = F.monitor_alertmanager_config('http://eda/', 30, '4h', token)
    except AnsibleFilterError:
        assert any(not 0x21 <= ord(c) <= 0x7e for c in token), repr(token)  # refused only for a blank or non-printable
        return
    hooks = config['receivers'][0]['webhook_configs']
    assert all(0x21 <= ord(c) <= 0x7e for c in token)
    assert hooks[0].get('http_config', {}).get('authorization', {}).get('credentials', '') == token


@pytest.mark.parametrize('url', ['ftp://x/', 'http://has space/', 'https://user:s3cret@host/', 5])
def test_a_bad_webhook_url_is_refused_without_showing_it(url):
    with pytest.raises(AnsibleFilterError) as caught:
        F.monitor_alertmanager_config(url, 30, '4h')
    assert 'monitor_alertmanager_webhook_url' in str(caught.value)
    assert 's3cret' not in str(caught.value) and 'space' not in str(caught.value)


def test_bad_retention_is_refused():
    assert F.monitor_prometheus_config(['h:1'], 15, 15, retention='12h')['scrape_configs']
    with pytest.raises(AnsibleFilterError, match='monitor_prometheus_retention="15 days": give a Prometheus duration'):
        F.monitor_prometheus_config(['h:1'], 15, 15, retention='15 days')
    with pytest.raises(AnsibleFilterError, match='monitor_alertmanager_repeat_interval="4 hours"'):
        F.monitor_alertmanager_config('', 30, '4 hours')
