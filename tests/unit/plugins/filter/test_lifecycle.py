# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the instance lifecycle: instances of a host, drain targets, emergency_stop records read back."""
from __future__ import annotations

import base64
import copy
import json
import pathlib

import pytest
from hypothesis import given, settings, strategies as st

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.filter import lifecycle
from ansible_collections.opsguard.anqicms.plugins.filter.lifecycle import (
    FilterModule,
    drain_targets,
    lifecycle_instance_problems,
    lifecycle_instances,
    stop_record_path,
    stop_records,
    unknown_instances,
)

INSTANCE = {'host': 'node2', 'address': '10.0.0.12', 'name': 'www', 'port': 8001, 'directory': '/opt/anqicms/www',
            'exe': '/opt/anqicms/www/anqicms', 'unit': 'anqicms-www.service', 'managed': True, 'sites': ['www.demo.test'],
            'running': True, 'rss_bytes': 1024, 'pids': [42]}


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {'lifecycle_instances', 'lifecycle_instance_problems', 'drain_targets',
                                             'stop_record_carry', 'stop_record_path', 'stop_records', 'unknown_instances'}


# ---------------------------------------------------------------- lifecycle_instances

@pytest.mark.parametrize('entries, base_dir, expected', [
    ([{'name': 'www', 'port': 8001}], '/opt/anqicms',
     [('www', 8001, '/opt/anqicms/www', 'anqicms-www.service', ['www.localhost'])]),
    ([{'name': 'b', 'port': '8002', 'directory': '/srv/b/', 'server_name': 'b.test', 'sites': [{'name': 's', 'server_name': 's.test'}]}],
     '/opt/anqicms', [('b', 8002, '/srv/b', 'anqicms-b.service', ['b.test', 's.test'])]),
    ([{'name': 'c', 'port': 1}], '/data/', [('c', 1, '/data/c', 'anqicms-c.service', ['c.localhost'])]),
    ([{'name': 'nop'}], '/opt/anqicms', [('nop', None, '/opt/anqicms/nop', 'anqicms-nop.service', ['nop.localhost'])]),
    (None, '/opt/anqicms', []),
])
def test_lifecycle_instances(entries, base_dir, expected):
    out = lifecycle_instances(entries, base_dir, 'node2', '10.0.0.12')
    assert [(i['name'], i['port'], i['directory'], i['unit'], i['sites']) for i in out] == expected
    assert all(i['host'] == 'node2' and i['address'] == '10.0.0.12' and i['managed'] and i['exe'] == i['directory'] + '/anqicms'
               for i in out)


@pytest.mark.parametrize('entries, words', [
    ([{'name': 'Bad Name', 'port': 1}], "name='Bad Name'"),
    ([{'name': 'www', 'port': 70000}], 'port=70000'),
    ([{'name': 'www', 'port': 'x'}], "port='x'"),
    ([{'name': 'www', 'directory': 'relative'}], "directory='relative'"),
    ('www', 'must be a list'),
    ([['www']], 'must be a dict'),
])
def test_lifecycle_instances_refuses(entries, words):
    with pytest.raises(AnsibleFilterError, match='opsguard_backup_instances') as info:
        lifecycle_instances(entries, variable='opsguard_backup_instances')
    assert words in str(info.value)
    problems = lifecycle_instance_problems(entries, 'opsguard_backup_instances')
    assert len(problems) == 1 and words in problems[0] and problems[0].endswith('.')


def test_lifecycle_instance_problems_fine():
    assert lifecycle_instance_problems([{'name': 'www', 'port': 8001}]) == []


# ---------------------------------------------------------------- drain_targets

def _hostvars(**proxies):
    return dict(proxies)


@pytest.mark.parametrize('instance, hostvars, proxies, expected', [
    # A remote nginx balancing over several hosts: only this host's backend, by address or by inventory name.
    (INSTANCE, _hostvars(node1={'proxy_sites': [{'name': 'www', 'backends': ['10.0.0.12:8001', '10.0.0.13:8001']},
                                                {'name': 'other', 'backends': ['node2:8001', '10.0.0.12:8002']}]}),
     ['node1'], [('node1', 'www', '10.0.0.12:8001'), ('node1', 'other', 'node2:8001')]),
    # A local backend only counts at an nginx on the instance's own host.
    (INSTANCE, _hostvars(node1={'proxy_sites': [{'name': 'www', 'backends': ['127.0.0.1:8001']}]},
                         node2={'proxy_sites': [{'name': 'www', 'backends': ['127.0.0.1:8001', 'localhost:8001', '[::1]:8001']}]}),
     ['node1', 'node2'], [('node2', 'www', '127.0.0.1:8001'), ('node2', 'www', 'localhost:8001'), ('node2', 'www', '[::1]:8001')]),
    # Without proxy_sites the proxy role serves the host's own app_instances.
    (INSTANCE, _hostvars(node2={'proxy_sites': [], 'app_instances': [{'name': 'www', 'port': 8001}, {'name': 'x', 'port': 8002}]}),
     ['node2'], [('node2', 'www', '127.0.0.1:8001')]),
    # Same port on another host's loopback is not this instance.
    (INSTANCE, _hostvars(node3={'app_instances': [{'name': 'www', 'port': 8001}]}), ['node3'], []),
    # No port (not managed by the app role): nothing to drain.
    (dict(INSTANCE, port=None), _hostvars(node2={'proxy_sites': [{'name': 'www', 'backends': ['127.0.0.1:8001']}]}), ['node2'], []),
    # No proxy group.
    (INSTANCE, {}, None, []),
    # Address defaults to the host name.
    (dict(INSTANCE, address=None), _hostvars(node1={'proxy_sites': [{'name': 'www', 'backends': ['node2:8001', '10.0.0.12:8001']}]}),
     ['node1'], [('node1', 'www', 'node2:8001')]),
])
def test_drain_targets(instance, hostvars, proxies, expected):
    out = drain_targets(instance, hostvars, proxies)
    assert [(d['proxy'], d['site'], d['backend']) for d in out] == expected


@pytest.mark.parametrize('instance, hostvars, proxies, words', [
    ('www', {}, [], 'must be a dict'),
    (dict(INSTANCE, port='http'), {}, [], "port 'http'"),
    (dict(INSTANCE, host=''), {}, [], 'has no host'),
    (INSTANCE, {}, ['ghost'], 'ghost is not in the inventory'),
    (INSTANCE, {}, 'node1', 'must be a list'),
    (INSTANCE, {'node1': {'proxy_sites': 'www'}}, ['node1'], 'proxy_sites of node1 must be a list'),
])
def test_drain_targets_refuses(instance, hostvars, proxies, words):
    with pytest.raises(AnsibleFilterError, match='drain_targets') as info:
        drain_targets(instance, hostvars, proxies)
    assert words in str(info.value)


# ---------------------------------------------------------------- records

def _record(**changes):
    record = {'instance': dict(INSTANCE), 'stopped_at': '2026-01-01T00:00:00Z', 'outcome': 'stopped_gracefully',
              'unit_was_enabled': True, 'cron': [], 'drains': [{'proxy': 'node1', 'site': 'www', 'backend': '10.0.0.12:8001'}],
              'diagnostics': None, 'backup_id': None}
    for key, value in changes.items():
        if key.startswith('instance_'):
            record['instance'][key[len('instance_'):]] = value
        else:
            record[key] = value
    return record


def _slurp(record, path='/var/lib/opsguard/emergency_stop/opt_anqicms_www.json', raw=None):
    text = raw if raw is not None else json.dumps(record)
    return {'results': [{'item': {'path': path}, 'content': base64.b64encode(text.encode('utf-8')).decode('ascii')}]}


def test_stop_record_path():
    assert stop_record_path('/opt/anqicms/www/') == '/var/lib/opsguard/emergency_stop/opt_anqicms_www.json'
    with pytest.raises(AnsibleFilterError, match='stop_record_path'):
        stop_record_path('relative')


def test_a_good_record_is_read_back():
    out = stop_records(_slurp(_record()), 'node2', ['node1'])
    assert out['problems'] == []
    [record] = out['records']
    assert record['key'] == 'node2:www' and record['record_path'].endswith('opt_anqicms_www.json')
    assert record['instance']['unit'] == 'anqicms-www.service' and record['unit_was_enabled'] is True
    assert record['drains'] == [{'proxy': 'node1', 'site': 'www', 'backend': '10.0.0.12:8001'}]


@pytest.mark.parametrize('stopped_at, shown', [
    ('2026-11-30T07:45:10Z', '2026-11-30T07:45:10Z'), ('\x1b[2J\x1b[31mforged', None), (12, None), ('2026-11-30 07:45', None),
])
def test_a_record_shows_only_a_stop_time_emergency_stop_could_have_written(stopped_at, shown):
    [record] = stop_records(_slurp(_record(stopped_at=stopped_at)), 'node2', ['node1'])['records']
    assert record['stopped_at'] == shown


def test_a_pending_record_is_read_back():
    """What the stop entry point writes before the drain (app_stop_record_path): recover undoes it like a complete one."""
    out = stop_records(_slurp(_record(outcome='pending')), 'node2', ['node1'])
    assert out['problems'] == []
    [record] = out['records']
    assert record['outcome'] == 'pending' and record['unit_was_enabled'] is True and record['cron'] == []
    assert record['drains'] == [{'proxy': 'node1', 'site': 'www', 'backend': '10.0.0.12:8001'}]


def test_an_unmanaged_record_is_read_back():
    rec = _record(instance_name='/srv/manual', instance_directory='/srv/manual', instance_unit=None, instance_port=None,
                  instance_exe='/srv/manual/anqicms', instance_managed=False, drains=[], unit_was_enabled=False)
    out = stop_records(_slurp(rec, '/var/lib/opsguard/emergency_stop/srv_manual.json'), 'node2', ['node1'])
    assert out['problems'] == [] and out['records'][0]['key'] == 'node2:/srv/manual'
    assert out['records'][0]['instance']['managed'] is False


@pytest.mark.parametrize('record, path, raw, words', [
    (None, None, 'not json', 'is not JSON'),
    (None, None, '[1, 2]', 'not a JSON object'),
    (None, None, '[' * 100000 + ']' * 100000, 'nested too deeply'),
    (_record(drains=[{'proxy': 'node1', 'site': 'www', 'backend': ['10.0.0.12:8001']}]), None, None, 'of strings'),
    (_record(instance='www'), None, None, 'instance is missing'),
    (_record(instance_unit='sshd.service'), None, None, "instance.unit 'sshd.service' is not the unit of instance www"),
    (_record(instance_name='../x'), None, None, 'is not an app_instances name'),
    (_record(instance_host='node3'), None, None, "instance.host 'node3' is not this host"),
    (_record(instance_directory='/opt/anqicms/other'), None, None, 'file name does not belong'),
    (_record(instance_directory='/opt/anqicms/www/../../etc'), None, None, '".."'),
    (_record(instance_directory='opt/anqicms/www'), None, None, 'not an absolute path'),
    (_record(instance_port=22), None, None, None),  # drains no longer match the port
    (_record(instance_port='80; rm -rf /'), None, None, 'not a number from 1 to 65535'),
    (_record(instance_port=None), None, None, 'has a unit but no port'),
    (_record(instance_exe='anqicms'), None, None, 'instance.exe'),
    (_record(drains=[{'proxy': 'evil', 'site': 'www', 'backend': '10.0.0.12:8001'}]), None, None, "nginx host 'evil'"),
    (_record(drains=[{'proxy': 'node1', 'site': 'www', 'backend': '10.0.0.13:8001'}]), None, None, 'is not this instance'),
    (_record(drains=[{'proxy': 'node1', 'site': 'www', 'backend': '127.0.0.1:8001'}]), None, None, 'is not this instance'),
    (_record(drains=[{'proxy': 'node1', 'site': '../../x', 'backend': '10.0.0.12:8001'}]), None, None, 'is not a site name'),
    (_record(drains=[{'proxy': 'node1', 'site': 'www', 'backend': '10.0.0.12:8001', 'x': 1}]), None, None, 'is not {proxy, site, backend}'),
    (_record(drains='all'), None, None, 'drains must be a list'),
    (_record(unit_was_enabled='yes'), None, None, 'unit_was_enabled must be true or false'),
    (_record(backup_id='../../etc'), None, None, 'is not a backup id'),
    (_record(cron='x'), None, None, 'cron must be a list'),
    (_record(), '/tmp/opt_anqicms_www.json', None, 'is not in /var/lib/opsguard/emergency_stop'),
    (_record(instance_name='/srv/x', instance_unit=None, instance_port=None), None, None, 'named by its directory'),
])
def test_a_bad_record_is_refused(record, path, raw, words):
    out = stop_records(_slurp(record, path or '/var/lib/opsguard/emergency_stop/opt_anqicms_www.json', raw), 'node2', ['node1'])
    assert out['records'] == []
    [problem] = out['problems']
    assert problem.startswith('node2: the emergency_stop record ') and 'Nothing was started or undrained' in problem
    if words:
        assert words in problem


@pytest.mark.parametrize('result, words', [
    ({'item': {'path': '/var/lib/opsguard/emergency_stop/a.json'}, 'failed': True, 'msg': 'permission denied'}, 'could not be read (permission denied)'),
    ({'item': {'path': '/var/lib/opsguard/emergency_stop/a.json'}, 'content': '!!!'}, 'not valid base64'),
    ('garbage', 'not a dict'),
])
def test_unreadable_records_are_refused(result, words):
    out = stop_records([result], 'node2', [])
    assert out['records'] == [] and words in out['problems'][0]


def test_a_duplicate_record_is_refused():
    slurped = _slurp(_record())
    slurped['results'] *= 2
    out = stop_records(slurped, 'node2', ['node1'])
    assert len(out['records']) == 1 and 'also recorded in' in out['problems'][0]


def test_good_records_beside_a_bad_one_are_still_parsed():
    good = _slurp(_record())['results']
    bad = _slurp(_record(instance_host='node9'))['results']
    out = stop_records(good + bad, 'node2', ['node1'])
    assert len(out['records']) == 1 and len(out['problems']) == 1


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                       max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(['instance', 'name', 'directory', 'port', 'unit', 'exe', 'host', 'drains', 'unit_was_enabled',
                            'backup_id', 'cron']),
       value=JSONISH)
def test_tampered_records_never_name_something_else(key, value):
    """Any one field replaced by anything: either refused with a sentence, or still exactly this instance."""
    record = _record()
    if key in ('instance', 'drains', 'unit_was_enabled', 'backup_id', 'cron'):
        record[key] = value
    else:
        record['instance'][key] = value
    out = stop_records(_slurp(record), 'node2', ['node1'])
    assert len(out['records']) + len(out['problems']) == 1
    for rec in out['records']:
        inst = rec['instance']
        assert inst['directory'] == '/opt/anqicms/www' and inst['host'] == 'node2'
        assert inst['unit'] == 'anqicms-www.service' and inst['name'] == 'www' and inst['port'] == 8001
        assert all(d['proxy'] == 'node1' and d['backend'] in ('10.0.0.12:8001', 'node2:8001') for d in rec['drains'])
    for problem in out['problems']:
        assert 'is refused' in problem


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_random_bytes_are_refused_not_raised(raw):
    result = {'item': {'path': '/var/lib/opsguard/emergency_stop/opt_anqicms_www.json'}, 'content': base64.b64encode(raw).decode('ascii')}
    out = stop_records([result], 'node2', ['node1'])
    assert out['records'] == [] and len(out['problems']) == 1


def test_records_are_not_modified():
    slurped = _slurp(_record())
    before = copy.deepcopy(slurped)
    stop_records(slurped, 'node2', ['node1'])
    assert slurped == before
    assert lifecycle.RECORD_DIR == '/var/lib/opsguard/emergency_stop'


# ---------------------------------------------------------------- unknown_instances

HOSTVARS = {'node1': {'app_instances': [{'name': 'www', 'port': 8001}, {'name': 'blog', 'port': 8002}]},
            'node2': {}, 'node3': {'app_instances': 'not a list'}}


@pytest.mark.parametrize('entries, hosts, expected', [
    (['node1:www', 'node1:blog'], ['node1', 'node2'], []),
    (['node1:shop'], ['node1'], ['node1:shop']),
    (['node1:www'], ['node2'], ['node1:www']),          # a host outside the target
    (['node2:www'], ['node2'], ['node2:www']),          # a host without app_instances
    (['node3:www'], ['node3'], ['node3:www']),          # app_instances that is not a list
    (['node9:www', 'node1:www', 'node1:'], ['node1', 'node9'], ['node9:www', 'node1:']),
    ([], ['node1'], []),
])
def test_unknown_instances(entries, hosts, expected):
    hostvars = dict(HOSTVARS, node9={})
    assert unknown_instances(entries, hosts, hostvars) == expected


# ---------------------------------------------------------------- stop_record_carry

DRAIN = {'proxy': 'node1', 'site': 'www', 'backend': '10.0.0.12:8001'}
RECORD_PATH = '/var/lib/opsguard/emergency_stop/opt_anqicms_www.json'
STAT = {'stat': {'exists': True, 'isreg': True, 'size': 600, 'path': RECORD_PATH}}


def _slurped(record=None, raw=None, path=RECORD_PATH):
    text = raw if raw is not None else json.dumps(record)
    return {'content': base64.b64encode(text.encode('utf-8')).decode('ascii'), 'source': path, 'encoding': 'base64'}


def _carry(slurped, stat=None, instance=None, enabled=False, drains=(DRAIN,), proxies=('node1',)):
    stat = STAT if stat is None else stat
    return lifecycle.stop_record_carry(slurped, stat, INSTANCE if instance is None else instance, 'node2', list(proxies),
                                       enabled, list(drains))


@pytest.mark.parametrize('slurped, stat', [
    (None, {}), ({}, {'skipped': True}), ({'skipped': True, 'changed': False}, {'stat': {'exists': False}}),
    ('x', 'y'), ([1], None),
])
def test_carry_without_an_earlier_record_is_what_the_stop_finds_now(slurped, stat):
    out = lifecycle.stop_record_carry(slurped, stat if stat is not None else {}, INSTANCE, 'node2', ['node1'], False, [DRAIN, DRAIN])
    assert out == {'unit_was_enabled': False, 'drains': [DRAIN], 'cron': [], 'earlier': None, 'problem': None}


def test_carry_keeps_what_an_earlier_record_still_has_to_undo():
    """The instance was stopped (unit enabled), started again by hand with its unit still disabled, and is stopped
    again: the new record must still say the unit was enabled, and keep the earlier drains and cron lines."""
    other = {'proxy': 'node3', 'site': 'www', 'backend': '10.0.0.12:8001'}
    cron = [{'type': 'cron', 'file': '/etc/cron.d/www', 'line_number': 1, 'line': '* * * * * /opt/anqicms/www/start.sh'}]
    earlier = _record(unit_was_enabled=True, drains=[DRAIN, other, other], cron=cron)
    out = _carry(_slurped(earlier), proxies=('node1', 'node3'))
    assert out['unit_was_enabled'] is True and out['drains'] == [DRAIN, other] and out['cron'] == cron
    assert out['earlier'] == '2026-01-01T00:00:00Z' and out['problem'] is None


def test_carry_never_turns_an_enabled_unit_into_a_disabled_one():
    out = _carry(_slurped(_record(unit_was_enabled=False)), enabled=True)
    assert out['unit_was_enabled'] is True and out['drains'] == [DRAIN] and out['problem'] is None


def _deep(depth):
    return '[' * depth + ']' * depth


@pytest.mark.parametrize('slurped, stat, words', [
    (_slurped(raw='not json'), None, 'is not JSON'),
    (_slurped(raw=''), None, 'is not JSON'),
    (_slurped(raw=_deep(100000)), None, 'nested too deeply'),
    (_slurped(_record(instance_host='node3')), None, "instance.host 'node3' is not this host"),
    (_slurped(_record(drains=[{'proxy': 'evil', 'site': 'www', 'backend': '10.0.0.12:8001'}])), None, "nginx host 'evil'"),
    (_slurped(_record(drains=[{'proxy': 'node1', 'site': 'www', 'backend': ['10.0.0.12:8001']}])), None, 'of strings'),
    (_slurped(_record(drains=[{'proxy': 'node1', 'site': {'a': 1}, 'backend': '10.0.0.12:8001'}])), None, 'of strings'),
    (_slurped(_record(unit_was_enabled='yes')), None, 'unit_was_enabled must be true or false'),
    (_slurped(_record(), path='/tmp/opt_anqicms_www.json'), {'stat': {'exists': True, 'isreg': True, 'size': 10}},
     'is not in /var/lib/opsguard/emergency_stop'),
    (_slurped(_record(instance_directory='/opt/anqicms/other')), None, 'file name does not belong'),
    ({'content': '!!!', 'source': RECORD_PATH}, None, 'not valid base64'),
    ({'failed': False, 'msg': 'Permission denied', 'source': RECORD_PATH}, None, 'could not be read (Permission denied)'),
    ({'skipped': True}, {'stat': {'exists': True, 'isreg': False, 'size': 0, 'path': RECORD_PATH}}, 'not a regular file'),
    ({'skipped': True}, {'stat': {'exists': True, 'isreg': True, 'size': 1048577, 'path': RECORD_PATH}}, 'at most 1048576 bytes'),
    # Another instance at the same path: a port or address that changed, another name and unit.
    (_slurped(_record(instance_port=9000, drains=[{'proxy': 'node1', 'site': 'www', 'backend': '10.0.0.12:9000'}])), None,
     'it is of another instance (name "www", directory "/opt/anqicms/www", unit "anqicms-www.service", port 9000'),
    (_slurped(_record(instance_address='10.0.0.99', drains=[])), None, 'address "10.0.0.99"; now'),
    (_slurped(_record(instance_name='shop', instance_unit='anqicms-shop.service')), None, 'name "shop"'),
])
def test_carry_takes_nothing_from_a_record_that_does_not_add_up(slurped, stat, words):
    """A tampered record or one of another instance carries nothing (so it can never lead recover to undrain or enable
    something else, or make it refuse the new record), and says why."""
    out = _carry(slurped, stat=stat)
    assert (out['unit_was_enabled'], out['drains'], out['cron'], out['earlier']) == (False, [DRAIN], [], None)
    assert out['problem'].startswith('node2: the earlier emergency_stop record ') and words in out['problem'], out['problem']


def test_a_carried_record_is_one_recover_accepts():
    """What the carry merges into the new record passes the checks recover makes (stop_records)."""
    other = {'proxy': 'node3', 'site': 'www', 'backend': '10.0.0.12:8001'}
    out = _carry(_slurped(_record(drains=[other])), proxies=('node1', 'node3'))
    merged = _record(unit_was_enabled=out['unit_was_enabled'], drains=out['drains'], cron=out['cron'], outcome='pending')
    read = stop_records(_slurp(merged), 'node2', ['node1', 'node3'])
    assert read['problems'] == [] and read['records'][0]['drains'] == [DRAIN, other]


def test_carry_shows_no_stopped_at_it_cannot_read_as_a_time():
    out = _carry(_slurped(_record(stopped_at='\x1b[31m' + 'x' * 5000)), drains=())
    assert out['earlier'] == 'unknown' and out['unit_was_enabled'] is True


def test_the_stop_reads_no_record_bigger_than_the_carry_accepts():
    """roles/app/tasks/stop.yml skips the slurp of a record over RECORD_MAX_BYTES; the two limits are one."""
    stop = (pathlib.Path(__file__).resolve().parents[4] / 'roles' / 'app' / 'tasks' / 'stop.yml').read_text(encoding='utf-8')
    assert '_app_life_earlier_stat.stat.size | default(0) <= %d' % lifecycle.RECORD_MAX_BYTES in stop


@pytest.mark.parametrize('enabled, drains, instance, words', [
    ('yes', [], INSTANCE, 'unit_enabled_now must be true or false'),
    (None, [], INSTANCE, 'unit_enabled_now must be true or false'),
    (False, 'all', INSTANCE, 'drains_now must be a list'),
    (False, ['x'], INSTANCE, 'drains_now must be a list'),
    (False, [], 'www', 'instance must be a dict'),
    (False, [], dict(INSTANCE, directory='www'), 'instance.directory'),
    (False, [], dict(INSTANCE, port='http'), 'instance.port'),
])
def test_carry_refuses_arguments_of_the_wrong_type(enabled, drains, instance, words):
    with pytest.raises(AnsibleFilterError, match=words):
        lifecycle.stop_record_carry(None, {}, instance, 'node2', ['node1'], enabled, drains)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=20))
def test_carry_of_any_json_never_raises_and_never_forgets_the_current_state(value):
    out = _carry(_slurped(raw=json.dumps(value)), enabled=True)
    assert out['unit_was_enabled'] is True and out['drains'][0] == DRAIN
    assert out['problem'] is None or out['problem'].startswith('node2: the earlier emergency_stop record ')


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({
    'instance': st.fixed_dictionaries({k: st.one_of(st.none(), st.integers(), st.text(max_size=30), st.lists(st.integers(), max_size=2))
                                       for k in ('name', 'directory', 'port', 'unit', 'exe', 'host', 'address')}),
    'drains': st.lists(st.dictionaries(st.sampled_from(['proxy', 'site', 'backend', 'x']),
                                       st.one_of(st.text(max_size=20), st.integers(), st.lists(st.text(max_size=3), max_size=2)),
                                       max_size=4), max_size=3),
    'unit_was_enabled': st.one_of(st.booleans(), st.none(), st.text(max_size=3)),
    'cron': st.one_of(st.lists(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2), max_size=2), st.text(max_size=3)),
}))
def test_carry_of_record_shaped_input_never_raises(record):
    out = _carry(_slurped(record))
    assert out['drains'][0] == DRAIN and isinstance(out['unit_was_enabled'], bool)
    assert out['problem'] is None or out['problem'].startswith('node2: the earlier emergency_stop record ')
