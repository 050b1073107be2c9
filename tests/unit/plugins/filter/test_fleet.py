"""Unit tests of the fleet playbooks' filters, fed with memory_facts payloads shaped like the module's RETURN."""
from __future__ import annotations

import copy
import json
import pathlib

import pytest
from hypothesis import given, settings, strategies as st

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.filter.fleet import (
    FilterModule, diagnose_host, diagnose_recommendations, emergency_plan, emergency_report, fleet_report, host_instances,
    mariadb_variables, memory_of, min_healthy_count)

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
MIB = 1048576
WWW = '/opt/anqicms/www'
APP_INSTANCES = [{'name': 'www', 'port': 8001, 'server_name': 'www.demo.test', 'sites': [{'name': 'blog', 'server_name': 'blog.demo.test'}]}]


def memory(**changes) -> dict:
    """The fixture payload (a healthy AnQiCMS host) with top-level keys replaced."""
    data = json.loads((FIXTURES / 'memory_ok.json').read_text(encoding='utf-8'))
    data.update(copy.deepcopy(changes))
    return data


def critical(culprit_kind: str = 'anqicms', available_percent: float = 8.0, **changes) -> dict:
    data = memory(**changes)
    data['verdict'] = 'critical'
    data['limit']['available_percent'] = available_percent
    data['limit']['available_bytes'] = int(data['limit']['bytes'] * available_percent / 100)
    data['reasons'] = ['Only %.1f %% of the cgroup v2 limit of /lab-node2 is available.' % available_percent]
    if culprit_kind == 'anqicms':
        svc = data['services'][0]
    else:
        svc = {'name': 'mariadb', 'kind': 'database', 'exe': '/usr/sbin/mariadbd', 'install_dir': None, 'unit': 'mariadb.service',
               'pids': [77], 'rss_bytes': 900 * MIB, 'uss_bytes': None, 'pss_bytes': None, 'swap_bytes': None,
               'share_of_limit': 58.6, 'in_limit': True, 'cgroup': None}
        data['services'].insert(0, svc)
    data['culprit'] = {k: svc.get(k) for k in ('name', 'kind', 'exe', 'install_dir', 'unit', 'pids', 'rss_bytes', 'share_of_limit', 'cgroup')}
    return data


def result(mem: dict | None = None, **extra) -> dict:
    """A registered memory_facts result: the payload only as the opsguard_memory fact."""
    out = {'changed': False, 'failed': False}
    if mem is not None:
        out['ansible_facts'] = {'opsguard_memory': mem}
    out.update(extra)
    return out


UNREACHABLE = {'unreachable': True, 'changed': False, 'msg': 'Failed to connect to the host via ssh: Connection timed out'}
FAILED = {'failed': True, 'changed': False, 'msg': 'memory_facts on node9: invalid options: top=-1 must be between 0 and 200.'}


def measured(host: str, mem: dict | None = None, res: dict | None = None, app_instances=None, stopped: bool = False) -> dict:
    """One host as the plan play collects it: host, registered result, instances (host_instances)."""
    res = res if res is not None else result(mem)
    mem_used = memory_of(res)
    if mem_used is not None and stopped:
        mem_used = dict(mem_used, services=[s for s in mem_used['services'] if s['kind'] != 'anqicms'])
    instances = host_instances(mem_used, APP_INSTANCES if app_instances is None else app_instances, host) if mem_used else None
    return {'host': host, 'result': res, 'instances': instances}


# ---------------------------------------------------------------- memory_of

@pytest.mark.parametrize('res, memory_fact, expected', [
    (result(memory()), None, 'ok'),
    (UNREACHABLE, None, None),
    (FAILED, None, None),
    ({'skipped': True, 'changed': False}, None, None),
    (result(None), None, None),
    ({'verdict': 'ok', 'changed': False}, None, None),  # the payload only counts as the opsguard_memory fact
    (UNREACHABLE, memory(verdict='warning'), 'warning'),
])
def test_memory_of(res, memory_fact, expected):
    found = memory_of(res, memory_fact)
    assert (found or {}).get('verdict') == expected


# ---------------------------------------------------------------- host_instances

def test_managed_running_instance():
    [www] = host_instances(memory(), APP_INSTANCES, 'node2', '10.1.0.12')
    assert www == {'host': 'node2', 'address': '10.1.0.12', 'name': 'www', 'port': 8001, 'directory': WWW,
                   'exe': WWW + '/anqicms', 'unit': 'anqicms-www.service', 'managed': True,
                   'sites': ['www.demo.test', 'blog.demo.test'], 'running': True, 'rss_bytes': 94371840, 'pids': [4242]}


def test_managed_stopped_instance_and_defaults():
    mem = memory(services=[s for s in memory()['services'] if s['kind'] != 'anqicms'])
    [site] = host_instances(mem, [{'name': 'shop', 'port': 8002}], 'node3', None, '/srv/anqicms/')
    assert (site['directory'], site['exe'], site['address']) == ('/srv/anqicms/shop', '/srv/anqicms/shop/anqicms', 'node3')
    assert (site['running'], site['rss_bytes'], site['pids'], site['sites']) == (False, 0, [], ['shop.localhost'])


def test_unmanaged_and_outside_limit_processes_are_instances_too():
    manual = dict(memory()['services'][0], name='anqicms:/home/old', exe='/home/old/anqicms', install_dir='/home/old', pids=[99],
                  rss_bytes=5 * MIB, in_limit=False, share_of_limit=None, cgroup=None)
    out = host_instances(memory(outside_limit=[manual]), [{'name': 'www', 'port': 8001, 'directory': WWW + '/'}], 'node2')
    assert [(i['name'], i['managed'], i['running'], i['unit'], i['port']) for i in out] == [
        ('www', True, True, 'anqicms-www.service', 8001), ('/home/old', False, True, None, None)]
    assert out[1]['sites'] == [] and out[1]['pids'] == [99] and out[1]['exe'] == '/home/old/anqicms'


def test_no_app_instances_lists_running_processes():
    out = host_instances(memory(), None, 'node2')
    assert [(i['name'], i['managed']) for i in out] == [(WWW, False)]


@pytest.mark.parametrize('entries, words', [
    ('www', 'must be a list'),
    ([{'name': 'Bad Name', 'port': 8001}], 'Bad Name'),
])
def test_bad_app_instances_are_refused(entries, words):
    with pytest.raises(AnsibleFilterError, match='host_instances on node2: .*' + words):
        host_instances(memory(), entries, 'node2')


# ---------------------------------------------------------------- emergency_plan

def three_hosts(critical_hosts=('node2',), percents=None) -> list[dict]:
    percents = percents or {}
    return [measured(h, critical(available_percent=percents.get(h, 8.0)) if h in critical_hosts else memory())
            for h in ('node2', 'node3', 'node4')]


@pytest.mark.parametrize('min_healthy, serving, expected', [
    (1, 3, 1), ('2', 3, 2), ('50%', 3, 2), ('0%', 3, 0), ('100%', 3, 3), ('33%', 3, 1), ('34%', 3, 2),
    ('50%', 0, 0), (0, 5, 0), ('abc', 3, None), ('150%', 3, None), (-1, 3, None), (True, 3, None), ('5.5', 3, None), ('\u0663', 3, None),
])
def test_min_healthy_count(min_healthy, serving, expected):
    assert min_healthy_count(min_healthy, serving) == expected


def test_percentage_min_healthy_keeps_two_of_three_serving():
    plan = emergency_plan(three_hosts(('node2', 'node3'), {'node2': 9.0, 'node3': 4.0}), [], '50%', 1, generated='T')
    assert (plan['serving'], plan['min_healthy'], plan['min_healthy_count']) == (3, '50%', 2)
    # Most urgent first: node3 has less memory available.
    assert [(s['host'], s['name']) for s in plan['selected']] == [('node3', 'www')]
    assert [(s['host'], s['reason']) for s in plan['skipped']] == [
        ('node2', 'stopping it would leave 1 serving instance(s), below opsguard_min_healthy=50% (2)')]
    assert plan['errors'] == [] and plan['notes'] == [] and plan['unreachable'] == []
    assert plan['selected'][0]['why'].startswith('culprit of a critical host: Only 4.0 %')
    assert plan['selected'][0]['priority'] == 1 and plan['selected'][0]['verdict'] == 'critical'


@pytest.mark.parametrize('min_healthy, stopped', [('0%', ['node2', 'node3', 'node4']), ('100%', []), (0, ['node2', 'node3', 'node4']),
                                                  (2, ['node2']), ('3', [])])
def test_min_healthy_bounds_what_stops(min_healthy, stopped):
    plan = emergency_plan(three_hosts(('node2', 'node3', 'node4')), None, min_healthy, 1)
    assert sorted(s['host'] for s in plan['selected']) == stopped
    assert len(plan['skipped']) == 3 - len(stopped)
    assert plan['serving'] - len(plan['selected']) >= plan['min_healthy_count']


@pytest.mark.parametrize('min_healthy, max_parallel, error', [
    ('abc', 1, 'opsguard_min_healthy must be a count or a percentage from 0% to 100% such as "50%" (got "abc").'),
    ('101%', 1, 'opsguard_min_healthy must be a count or a percentage from 0% to 100% such as "50%" (got "101%").'),
    (1, 0, 'opsguard_max_parallel must be a positive count (got "0").'),
    (1, 'x', 'opsguard_max_parallel must be a positive count (got "x").'),
    (1, False, 'opsguard_max_parallel must be a positive count (got "False").'),
])
def test_bad_min_healthy_and_max_parallel_are_errors(min_healthy, max_parallel, error):
    plan = emergency_plan(three_hosts(), [], min_healthy, max_parallel)
    assert plan['errors'] == [error]


def test_unmatched_stop_entry_is_an_error_and_named_entries_override_culprits():
    plan = emergency_plan(three_hosts(('node2',)), ['node3:www', 'node4:nosuch', 'node9:www'], 1, 1)
    assert [(s['host'], s['priority'], s['why']) for s in plan['selected']] == [('node3', 0, 'named in opsguard_stop_instances')]
    assert plan['errors'] == [
        'opsguard_stop_instances entry "node4:nosuch" matches no instance on a reachable host (use host:name or host:/install/dir).',
        'opsguard_stop_instances entry "node9:www" matches no instance on a reachable host (use host:name or host:/install/dir).']


@pytest.mark.parametrize('entry', ['node3:' + WWW, 'node3:' + WWW + '/', 'node3:www'])
def test_stop_entry_by_name_or_directory(entry):
    plan = emergency_plan(three_hosts(()), entry, 1, '1')
    assert [s['host'] for s in plan['selected']] == ['node3'] and plan['errors'] == []


def test_instance_already_stopped_is_skipped_not_counted():
    hosts = [measured('node2', memory(), stopped=True), measured('node3', memory()), measured('node4', memory())]
    plan = emergency_plan(hosts, ['node2:www'], 1, 1)
    assert plan['serving'] == 2 and plan['selected'] == []
    assert [(s['host'], s['reason']) for s in plan['skipped']] == [('node2', 'already stopped')]
    assert plan['errors'] == []


def test_critical_host_whose_culprit_is_not_anqicms_gets_a_note_only():
    plan = emergency_plan([measured('node1', critical('database')), measured('node2', memory())], None, 1, 1)
    assert plan['selected'] == [] and plan['skipped'] == [] and plan['errors'] == []
    assert plan['notes'] == ['node1 is critical but its culprit is mariadb (database); emergency_stop stops AnQiCMS instances only: '
                             'run opsguard.anqicms.diagnose.']


def test_unreachable_and_failed_hosts_are_listed_and_not_counted():
    hosts = [measured('node5', res=UNREACHABLE), measured('node2', critical()), measured('node3', memory()),
             measured('node9', res=FAILED)]
    plan = emergency_plan(hosts, None, 1, 1, check_mode=True)
    assert plan['unreachable'] == [{'host': 'node5', 'msg': UNREACHABLE['msg']}, {'host': 'node9', 'msg': FAILED['msg']}]
    assert plan['serving'] == 2 and [s['host'] for s in plan['selected']] == ['node2'] and plan['check_mode'] is True


def test_plan_keeps_every_key_the_stop_tasks_read():
    plan = emergency_plan(three_hosts(), None, 1, 1)
    keys = {'host', 'address', 'name', 'port', 'directory', 'exe', 'unit', 'managed', 'sites', 'running', 'rss_bytes', 'pids'}
    assert keys <= set(plan['selected'][0])
    assert set(plan) == {'generated', 'check_mode', 'serving', 'min_healthy', 'min_healthy_count', 'max_parallel', 'selected',
                         'skipped', 'unreachable', 'notes', 'errors'}
    assert json.loads(json.dumps(plan)) == plan


def test_plan_accepts_a_dict_of_hosts_and_refuses_garbage():
    by_host = {h['host']: {k: v for k, v in h.items() if k != 'host'} for h in three_hosts()}
    assert [s['host'] for s in emergency_plan(by_host)['selected']] == ['node2']
    with pytest.raises(AnsibleFilterError, match='list of'):
        emergency_plan('node2')
    with pytest.raises(AnsibleFilterError, match='host name'):
        emergency_plan([{'result': {}}])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.floats(min_value=0, max_value=30)), min_size=1, max_size=8),
       st.one_of(st.integers(min_value=0, max_value=10), st.integers(min_value=0, max_value=100).map(lambda p: '%d%%' % p)))
def test_plan_never_goes_below_min_healthy(hosts, min_healthy):
    entries = []
    for index, (is_critical, is_stopped, percent) in enumerate(hosts):
        mem = critical(available_percent=percent) if is_critical else memory()
        entries.append(measured('node%02d' % index, mem, stopped=is_stopped))
    plan = emergency_plan(entries, None, min_healthy, 1)
    serving = sum(1 for dummy, stopped, dummy2 in hosts if not stopped)
    wanted = sum(1 for crit, stopped, dummy in hosts if crit and not stopped)
    assert plan['serving'] == serving
    count = plan['min_healthy_count']
    assert len(plan['selected']) == min(wanted, max(serving - count, 0))
    assert all(s['running'] for s in plan['selected'])
    assert len(plan['selected']) + len(plan['skipped']) == sum(1 for crit, dummy, dummy2 in hosts if crit)
    percents = [s['available_percent'] for s in plan['selected']]
    assert percents == sorted(percents)


# ---------------------------------------------------------------- emergency_report

def test_report_adds_memory_before_and_after_and_lists_what_failed():
    plan = emergency_plan([measured('node2', critical()), measured('node5', critical()), measured('node3', memory())], None, 1, 1)
    done = {'host': 'node2', 'name': 'www', 'sites': ['www.demo.test'], 'outcome': 'stopped_gracefully', 'signals': ['SIGTERM'],
            'drained': 1, 'connections_left': 0, 'rss_freed_bytes': 94371840, 'stop_seconds': 1.2, 'port_released': True,
            'diagnostics': '/var/lib/opsguard/diagnostics/x.json', 'backup_id': None}
    after = memory()
    hosts = [{'host': 'node2', 'before': result(critical()), 'after': result(after), 'selected': [plan['selected'][0]], 'done': [done]},
             {'host': 'node5', 'before': result(critical()), 'after': None, 'selected': [plan['selected'][1]], 'done': None,
              'failure': "unreachable at task 'Stop | drain': timeout"}]
    report = emergency_report(plan, hosts, finished='F')
    assert report['finished'] == 'F' and report['selected'] == plan['selected']
    first, second = report['stopped']
    before_bytes = critical()['limit']['available_bytes']
    assert first == dict(done, verdict_before='critical', verdict_after='ok', available_before_bytes=before_bytes,
                         available_after_bytes=after['limit']['available_bytes'],
                         recovered_bytes=after['limit']['available_bytes'] - before_bytes)
    assert second == {'host': 'node5', 'name': 'www', 'sites': ['www.demo.test', 'blog.demo.test'], 'outcome': 'failed',
                      'error': "unreachable at task 'Stop | drain': timeout", 'verdict_before': 'critical'}


def test_report_of_a_run_that_ended_early_and_of_nothing():
    plan = emergency_plan(three_hosts(), None, 1, 1)
    hosts = [{'host': 'node2', 'before': result(critical()), 'selected': plan['selected']}]
    [entry] = emergency_report(plan, hosts)['stopped']
    assert entry['error'] == 'the run ended before this instance was handled'
    assert emergency_report(plan, None)['stopped'] == []
    with pytest.raises(AnsibleFilterError, match='plan'):
        emergency_report([], [])


# ---------------------------------------------------------------- fleet_report

def fleet() -> list[dict]:
    warning = memory(verdict='warning', reasons=['Only 20.0 % available.'],
                     trend={'samples': 4, 'seconds': 30, 'leak_suspected': True, 'suspects': ['anqicms:/opt/anqicms/www'], 'services': []})
    return [{'host': 'node3', 'result': result(critical())}, {'host': 'node1', 'result': result(memory(pressure=None))},
            {'host': 'node2', 'result': result(warning)}, {'host': 'node4', 'result': UNREACHABLE},
            {'host': 'node5', 'result': FAILED}]


@pytest.mark.parametrize('fail_on, failing', [
    ('critical', ['node3', 'node4', 'node5']), ('warning', ['node2', 'node3', 'node4', 'node5']), ('never', [])])
def test_fleet_report_fails_on(fail_on, failing):
    report = fleet_report(fleet(), fail_on, generated='G')
    assert report['failing'] == failing and report['fail_on'] == fail_on and report['generated'] == 'G'


def test_fleet_report_rows():
    report = fleet_report(fleet())
    assert report['summary'] == {'ok': 1, 'warning': 1, 'critical': 1, 'unknown': 2}
    rows = {r['host']: r for r in report['hosts']}
    assert list(rows) == ['node1', 'node2', 'node3', 'node4', 'node5']
    assert rows['node1'] == {'host': 'node1', 'verdict': 'ok', 'level': 0, 'reasons': memory()['reasons'], 'culprit': None,
                             'limit_bytes': 1610612736, 'limit_source': 'cgroup v2', 'available_bytes': 1159641088,
                             'pressure_some_avg10': None, 'trend': None, 'failure': None}
    assert rows['node2']['trend'] == ['anqicms:/opt/anqicms/www'] and rows['node2']['level'] == 1
    assert rows['node3']['culprit'] == 'anqicms:/opt/anqicms/www' and rows['node3']['pressure_some_avg10'] == 0.0
    assert rows['node4']['reasons'] == ['unreachable: ' + UNREACHABLE['msg']] and rows['node4']['level'] == 2
    assert rows['node5']['reasons'] == ['check failed: ' + FAILED['msg']] and rows['node5']['verdict'] == 'unknown'
    assert [rows[h]['failure'] for h in rows] == [None, None, None, 'unreachable', 'failed']


def test_fleet_report_refuses_bad_fail_on():
    with pytest.raises(AnsibleFilterError, match='fail_on must be one of critical, warning, never'):
        fleet_report(fleet(), 'sometimes')


# ---------------------------------------------------------------- diagnose

KILL = {'pid': 4242, 'victim': 'anqicms', 'anon_rss_bytes': 700 * MIB, 'seconds_since_boot': 5000.0,
        'time': '2026-11-29T04:00:00Z', 'epoch': 1795838400.0, 'constraint': 'CONSTRAINT_MEMCG', 'memcg': '/lab-node2/system.slice/anqicms-www.service'}


def with_oom(recent, cgroup_kills=1, source='cgroup v2', messages=None) -> dict:
    mem = memory()
    mem['oom'] = {'host_oom_kills': 3, 'cgroup_oom_kills': cgroup_kills, 'cgroup_events': {'oom': cgroup_kills, 'oom_kill': cgroup_kills},
                  'recent': recent, 'recent_window_seconds': 900, 'messages': messages if messages is not None else recent}
    mem['limit']['source'] = source
    return mem


def oom_recs(mem: dict) -> list[str]:
    return [r for r in diagnose_recommendations(mem) if 'OOM killer' in r]


def test_oom_recommendation_fires_on_recent_kills():
    assert oom_recs(with_oom([KILL])) == [
        'The kernel OOM killer has acted here recently (1 kill(s) in the last 900 s: anqicms (pid 4242)): the limits above are not yet enough.']


@pytest.mark.parametrize('mem', [
    pytest.param(memory(), id='no kill'),
    pytest.param(with_oom([], messages=[KILL]), id='only older kills, outside the window'),
    pytest.param(with_oom([KILL], cgroup_kills=0), id='machine-wide log, not this cgroup'),
    pytest.param(with_oom([KILL], source='meminfo'), id='kill forced by another cgroup limit'),
])
def test_oom_recommendation_only_for_kills_in_this_scope(mem):
    assert oom_recs(mem) == []


def test_oom_kill_on_the_whole_machine():
    kill = dict(KILL, constraint='CONSTRAINT_NONE', victim='mariadbd', pid=77)
    assert 'mariadbd (pid 77)' in oom_recs(with_oom([kill], cgroup_kills=0, source='meminfo'))[0]


def test_go_env_cgroup_limit_leak_swap_recommendations():
    mem = memory()
    mem['services'][0]['cgroup'] = None
    mem['trend'] = {'samples': 4, 'seconds': 30, 'leak_suspected': True, 'suspects': ['anqicms:/opt/anqicms/www'],
                    'services': [{'name': 'anqicms:/opt/anqicms/www', 'kind': 'anqicms', 'rss_bytes': [1, 2],
                                  'growth_bytes_per_minute': 60 * MIB, 'leak_suspected': True, 'minutes_to_limit': 12.4},
                                 {'name': 'nginx', 'kind': 'nginx', 'growth_bytes_per_minute': 0, 'leak_suspected': False}]}
    mem['system'].update(swap_total=1024 * MIB, swap_used=700 * MIB)
    recs = diagnose_recommendations(mem, None, {'anqicms:/opt/anqicms/www': 'GOGC=100\n', 'anqicms:/opt/x': 'GOMEMLIMIT=300MiB\n'})
    assert recs == [
        'anqicms:/opt/anqicms/www runs without GOMEMLIMIT: the Go heap grows until the kernel kills it. Deploy it with the '
        'opsguard.anqicms.app role (GOMEMLIMIT below MemoryHigh below MemoryMax).',
        'anqicms:/opt/anqicms/www has no memory limit of its own: one leaking instance can starve the database and the other '
        'instances. Set MemoryHigh/MemoryMax (app role).',
        'anqicms:/opt/anqicms/www grows 60.0 MiB/min, the limit is reached in about 12 min: plan a graceful restart '
        '(opsguard.anqicms.emergency_stop, then recover) and report the leak.',
        'Swap is 68 % used: the host is paging; latency follows.']


def test_healthy_host_gets_no_recommendation():
    assert diagnose_recommendations(memory(), [[{'Variable_name': 'max_connections', 'Value': '151'}]],
                                    {'anqicms:/opt/anqicms/www': 'GOMEMLIMIT=600MiB\nGOGC=100\n'}) == []


MYSQL_ROWS = [
    [{'Variable_name': 'innodb_buffer_pool_size', 'Value': str(512 * MIB)}, {'Variable_name': 'max_connections', 'Value': '10'},
     {'Variable_name': 'performance_schema', 'Value': 'OFF'}],
    [{'Variable_name': 'Innodb_buffer_pool_pages_data', 'Value': '1000'}, {'Variable_name': 'Innodb_buffer_pool_pages_free', 'Value': '31000'},
     {'Variable_name': 'Innodb_buffer_pool_pages_total', 'Value': '32768'}, {'Variable_name': 'Max_used_connections', 'Value': '9'}],
]


def test_mariadb_recommendations():
    recs = diagnose_recommendations(memory(), MYSQL_ROWS, {})
    assert recs == [
        'max_connections is 10, below the 20 connections the 1 AnQiCMS process(es) may open (20 per site per process, fixed in 3.5.8): '
        'raise it (opsguard.anqicms.database).',
        'The InnoDB buffer pool is 512 MiB (33 % of the limit) but only 5 % used: shrink it (opsguard.anqicms.database).']


def test_mariadb_variables_flattens_query_results():
    db = mariadb_variables(MYSQL_ROWS)
    assert db['max_connections'] == '10' and db['Max_used_connections'] == '9' and len(db) == 7
    assert mariadb_variables({'a': 1}) == {'a': 1} and mariadb_variables(None) == {}


def test_diagnose_host():
    mem = with_oom([KILL])
    mem['services'].append(dict(mem['services'][1], name='nginx-2', pids=[400], rss_bytes=MIB))
    out = diagnose_host(mem, MYSQL_ROWS, {'anqicms:/opt/anqicms/www': 'GOMEMLIMIT=600MiB'}, ['line 1', 'line 2'])
    assert out['by_kind'] == [{'kind': 'anqicms', 'rss_bytes': 94371840}, {'kind': 'nginx', 'rss_bytes': 12582912 + MIB},
                              {'kind': 'other', 'rss_bytes': 8388608}]
    assert out['services'][0] == {'name': 'anqicms:/opt/anqicms/www', 'kind': 'anqicms', 'rss_bytes': 94371840,
                                  'share_of_limit': 5.9, 'unit': 'anqicms-www.service'}
    assert out['limit'] == {'bytes': 1610612736, 'source': 'cgroup v2', 'available_bytes': 1159641088}
    assert out['mariadb']['max_connections'] == '10' and out['journal_tail'] == ['line 1', 'line 2']
    assert out['oom'] == mem['oom'] and out['verdict'] == 'ok'
    assert any('OOM killer' in r for r in out['recommendations'])
    with pytest.raises(AnsibleFilterError, match='opsguard_memory'):
        diagnose_host({'changed': False})


def test_filter_names():
    assert sorted(FilterModule().filters()) == ['diagnose_host', 'diagnose_recommendations', 'emergency_plan', 'emergency_report',
                                                'fleet_report', 'host_instances']


# ---------------------------------------------------------------- a payload captured on a test-fleet host

def lab_node1() -> dict:
    """memory_facts (sample_seconds=3) on the database + nginx host of the test fleet, as the opsguard_memory fact."""
    return json.loads((FIXTURES / 'memory_lab_node1.json').read_text(encoding='utf-8'))


def test_captured_payload_in_every_filter():
    mem = lab_node1()
    assert host_instances(mem, [], 'node1') == []
    [row] = fleet_report([{'host': 'node1', 'result': result(mem)}])['hosts']
    assert (row['verdict'], row['limit_source'], row['limit_bytes']) == ('ok', 'cgroup v1', mem['limit']['bytes'])
    assert row['trend'] == mem['trend']['suspects']
    out = diagnose_host(mem, MYSQL_ROWS[:1], {}, [])
    assert {'database', 'nginx', 'other'} <= {k['kind'] for k in out['by_kind']}
    assert sum(k['rss_bytes'] for k in out['by_kind']) == sum(s['rss_bytes'] for s in mem['services'])
    # The kernel counted OOM kills since boot (host_oom_kills), none of them recent here: no OOM recommendation.
    assert not any('OOM killer' in r for r in out['recommendations'])


def test_captured_payload_critical_database_host():
    mem = lab_node1()
    database = next(s for s in mem['services'] if s['kind'] == 'database')
    mem.update(verdict='critical', culprit={k: database.get(k) for k in ('name', 'kind', 'exe', 'install_dir', 'unit', 'pids', 'rss_bytes')})
    plan = emergency_plan([{'host': 'node1', 'result': result(mem), 'instances': host_instances(mem, [], 'node1')}])
    assert plan['selected'] == [] and plan['serving'] == 0
    assert plan['notes'] == ['node1 is critical but its culprit is mariadb (database); emergency_stop stops AnQiCMS instances only: '
                             'run opsguard.anqicms.diagnose.']
    mem['oom']['recent'] = [dict(KILL, constraint='CONSTRAINT_MEMCG', victim='mariadbd')]
    mem['oom']['cgroup_oom_kills'] = 1
    assert 'mariadbd (pid 4242)' in oom_recs(mem)[0]
