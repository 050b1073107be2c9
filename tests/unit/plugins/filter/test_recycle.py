# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The recycle playbook's decisions: what to recycle, what to refuse (recycling would not help), what happened."""
from __future__ import annotations

import base64
import json

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.filter.recycle import (
    FilterModule, history_path, recycle_history, recycle_plan, recycle_report)
from ansible_collections.opsguard.anqicms.tests.unit.plugins.filter.test_fleet import (
    UNREACHABLE, critical, measured, memory)

NOW = 1_800_000_000.0
WWW = '/opt/anqicms/www'


def slurped(path: str, data) -> dict:
    text = data if isinstance(data, str) else json.dumps(data)
    return {'item': {'path': path}, 'content': base64.b64encode(text.encode()).decode(), 'source': path}


def history(*ages: float, directory: str = WWW) -> list:
    return [slurped(history_path(directory), {'directory': directory, 'recycled_at': [NOW - a for a in ages]})]


def fleet(hist_node3=None, **per_host) -> list:
    hosts = [measured(h, per_host.get(h, memory())) for h in ('node2', 'node3', 'node4')]
    if hist_node3 is not None:
        hosts[1]['history'] = hist_node3
    return hosts


def plan(hosts, names=None, **kw):
    kw.setdefault('now', NOW)
    return recycle_plan(hosts, names, **kw)


def test_named_instance_is_selected_with_its_history():
    p = plan(fleet(history(10, 4000)), ['node3:www'])
    assert p['errors'] == [] and [(s['host'], s['name'], s['key']) for s in p['selected']] == [('node3', 'www', 'node3:www')]
    sel = p['selected'][0]
    assert sel['recycles_in_window'] == 1 and sel['history'] == [NOW - 10] and sel['why'] == 'named in opsguard_instances'
    assert p['serving'] == 3 and p['min_healthy_count'] == 1 and p['now'] == NOW and (p['limit'], p['window']) == (3, 3600)
    # Named by install directory (as an alert does), with or without the trailing slash.
    assert [s['host'] for s in plan(fleet(), ['node3:/opt/anqicms/www/'])['selected']] == ['node3']


def test_without_names_the_anqicms_culprits_of_critical_hosts():
    p = plan(fleet(node4=critical()))
    assert [s['host'] for s in p['selected']] == ['node4'] and p['selected'][0]['why'].startswith('culprit of a critical host')
    assert plan(fleet())['selected'] == [] and plan(fleet())['errors'] == []


def test_a_culprit_that_is_not_anqicms_is_refused_with_emergency_stop_named():
    p = plan(fleet(node4=critical('database')))
    assert p['selected'] == [] and len(p['errors']) == 1
    assert 'node4 is critical but its culprit is mariadb (database), not an AnQiCMS instance' in p['errors'][0]
    assert 'opsguard.anqicms.emergency_stop' in p['errors'][0]
    p = plan(fleet(), ['node3:/usr/sbin/mariadbd'])
    assert 'matches no AnQiCMS instance on a reachable host' in p['errors'][0] and 'emergency_stop' in p['errors'][0]


def test_the_recycle_limit_refuses_within_the_window_only():
    p = plan(fleet(history(10, 20, 30)), ['node3:www'])
    assert p['selected'] == [] and len(p['errors']) == 1
    assert p['errors'][0].startswith('node3:www: it was recycled 3 time(s) in the last 3600 s (opsguard_recycle_limit 3')
    assert 'emergency_stop (-e \'{"opsguard_stop_instances": ["node3:www"]}\')' in p['errors'][0]
    # Older than the window, or in the future (clock trouble): not counted.
    p = plan(fleet(history(10, 20, 3601, -50)), ['node3:www'])
    assert p['errors'] == [] and p['selected'][0]['recycles_in_window'] == 2
    assert plan(fleet(history(10, 20, 30)), ['node3:www'], limit=4)['errors'] == []
    assert plan(fleet(history(10, 20, 30)), ['node3:www'], window=25)['errors'] == []


@pytest.mark.parametrize('files, note', [
    ([slurped(history_path(WWW), 'not json')], 'it is not JSON'),
    ([slurped(history_path(WWW), [1, 2])], 'it is not {directory, recycled_at'),
    ([slurped(history_path(WWW), {'directory': '/opt/anqicms/shop', 'recycled_at': [NOW]})], 'does not belong to this file'),
    ([slurped(history_path(WWW), {'directory': WWW, 'recycled_at': ['yesterday']})], 'must be a list of times'),
    ([slurped(history_path(WWW), {'directory': WWW, 'recycled_at': [True]})], 'must be a list of times'),
    ([slurped('/tmp/opt_anqicms_www.json', {'directory': WWW, 'recycled_at': [NOW]})], 'does not belong to this file'),
    ([{'item': {'path': history_path(WWW)}, 'failed': True, 'msg': 'Permission denied'}], 'could not be read (Permission denied)'),
    ([{'item': {'path': history_path(WWW)}, 'content': '!!!'}], 'it is not JSON'),
])
def test_an_unusable_history_counts_as_none_with_a_note(files, note):
    p = plan(fleet(files), ['node3:www'])
    assert p['errors'] == [] and p['selected'][0]['recycles_in_window'] == 0
    assert len(p['notes']) == 1 and note in p['notes'][0] and p['notes'][0].startswith('node3: the recycle history')


def test_min_healthy_and_max_parallel_bound_what_is_out_at_once():
    hosts = fleet(node2=critical(), node3=critical(), node4=critical())
    assert [s['host'] for s in plan(hosts, min_healthy=2)['selected']] == ['node2', 'node3', 'node4']
    p = plan(hosts, min_healthy=3)
    assert 'only 0 of the 3 serving may be out (opsguard_min_healthy=3 keeps 3 serving)' in p['errors'][0]
    p = plan(hosts, min_healthy='50%', max_parallel=2)
    assert 'takes up to 2 instance(s) out of rotation at once, but only 1 of the 3' in p['errors'][0]
    assert 'lower opsguard_max_parallel' in p['errors'][0]
    assert plan(hosts, min_healthy='33%', max_parallel=2)['errors'] == []
    # One host to recycle: max_parallel above 1 takes only one out.
    assert plan(fleet(), ['node3:www'], min_healthy=2, max_parallel=5)['errors'] == []
    for bad, message in (({'min_healthy': 'x'}, 'opsguard_min_healthy must be'), ({'max_parallel': 0}, 'opsguard_max_parallel must be'),
                         ({'limit': 0}, 'opsguard_recycle_limit must be'), ({'window': 'soon'}, 'opsguard_recycle_window must be')):
        assert any(message in e for e in plan(fleet(), ['node3:www'], **bad)['errors']), bad


def test_stopped_unmanaged_and_unreachable():
    hosts = fleet()
    hosts[1] = measured('node3', memory(), stopped=True)
    p = plan(hosts, ['node3:www'])
    assert p['selected'] == [] and p['errors'] == [] and 'not running' in p['skipped'][0]['reason'] and 'recover' in p['skipped'][0]['reason']
    hosts = fleet()
    hosts[1] = measured('node3', memory(), app_instances=[])   # running, but not managed by the app role
    p = plan(hosts, ['node3:' + WWW])
    assert 'it is not an instance of the app role' in p['errors'][0] and 'emergency_stop' in p['errors'][0]
    hosts = fleet()
    hosts[1] = {'host': 'node3', 'result': UNREACHABLE, 'instances': None}
    p = plan(hosts, ['node3:www'])
    assert p['unreachable'][0]['host'] == 'node3' and 'matches no AnQiCMS instance on a reachable host' in p['errors'][0]
    with pytest.raises(AnsibleFilterError, match='must be a list'):
        recycle_plan('node3')


def test_recycle_history_appends_and_bounds():
    sel = plan(fleet(history(10, 20)), ['node3:www'])['selected'][0]
    assert recycle_history(sel, NOW) == {'directory': WWW, 'recycled_at': [NOW - 20, NOW - 10, int(NOW)]}
    assert len(recycle_history(dict(sel, history=list(range(500))), NOW)['recycled_at']) == 100
    with pytest.raises(AnsibleFilterError):
        recycle_history({'directory': WWW}, 'now')
    assert history_path('/opt/anqicms/www/') == '/var/lib/opsguard/recycle/opt_anqicms_www.json'
    for bad in ('relative', '/', None):
        with pytest.raises(AnsibleFilterError):
            history_path(bad)


def test_report_names_what_was_not_recycled():
    p = plan(fleet(node2=critical(), node3=critical()), max_parallel=1)
    done = [{'host': 'node2', 'name': 'www', 'outcome': 'recycled'}]
    acted = [{'host': 'node2', 'selected': [p['selected'][0]], 'done': done},
             {'host': 'node3', 'selected': [p['selected'][1]], 'done': None, 'failure': "failed at task 'Start | health of www': timeout"}]
    report = recycle_report(p, acted, finished='t')
    assert [(r['host'], r['outcome']) for r in report['recycled']] == [('node2', 'recycled'), ('node3', 'failed')]
    assert report['failed'] == ['node3:www'] and 'Start | health of www' in report['recycled'][1]['error']
    assert recycle_report(p, [{'host': 'node3', 'selected': [p['selected'][1]]}])['recycled'][0]['error'].startswith('the run ended')
    with pytest.raises(AnsibleFilterError):
        recycle_report(None, [])
    assert set(FilterModule().filters()) == {'recycle_plan', 'recycle_history', 'recycle_history_path', 'recycle_report'}
