# Copyright: opsguard maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The recycle playbook's decisions: which instances to recycle (drain, graceful stop, start, health, undrain), which
to refuse because recycling would not help, and what happened. Documentation: recycle_plan.yml and recycle_report.yml
next to this file.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
import typing as t
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.filter.fleet import (
    _host_entries,
    _list,
    _map,
    _positive_count,
    _stop_keys,
    memory_of,
    min_healthy_count,
    utc_now,
)
from ansible_collections.opsguard.anqicms.plugins.plugin_utils.naming import record_name, strip_dir

HISTORY_DIR = '/var/lib/opsguard/recycle'
HISTORY_KEEP = 100


def history_path(directory: t.Any) -> str:
    """Where the recycle history of the instance installed in ``directory`` is kept on its host."""
    if not isinstance(directory, str) or not directory.startswith('/') or strip_dir(directory) == '/':
        raise AnsibleFilterError('recycle_history_path: %r is not an absolute install directory' % (directory,))
    return '%s/%s' % (HISTORY_DIR, record_name(directory))


def _histories(slurped: t.Any, host: str) -> tuple[dict[str, list[float]], list[str]]:
    """{install directory: [recycle times, epoch seconds]} of one host's history files read back with slurp, and a
    note per file that could not be used (an unusable history counts as none; the next recycle rewrites it)."""
    if isinstance(slurped, Mapping):
        slurped = slurped.get('results', [])
    found: dict[str, list[float]] = {}
    notes: list[str] = []
    for res in _list(slurped):
        res = _map(res)
        item = res.get('item')
        path = str(_map(item).get('path') if isinstance(item, Mapping) else item or res.get('source') or '?')
        try:
            if res.get('failed') or 'content' not in res:
                raise ValueError('it could not be read (%s)' % (res.get('msg') or 'no content'))
            if len(str(res['content'])) > 65536:
                raise ValueError('it is larger than a recycle history can be')
            try:
                data = json.loads(base64.b64decode(res['content'], validate=True).decode('utf-8'))
            except (binascii.Error, ValueError, TypeError, RecursionError):
                raise ValueError('it is not JSON') from None
            if not isinstance(data, dict) or not isinstance(data.get('directory'), str) or not isinstance(data.get('recycled_at'), list):
                raise ValueError('it is not {directory, recycled_at: [...]}')
            directory = strip_dir(data['directory'])
            if not directory.startswith('/') or path != history_path(directory):
                raise ValueError('its directory %r does not belong to this file' % (data['directory'][:200],))
            times = data['recycled_at']
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in times):
                raise ValueError('recycled_at must be a list of times (seconds since the epoch)')
            found[directory] = sorted(float(x) for x in times)
        except (ValueError, AnsibleFilterError) as exc:
            notes.append('%s: the recycle history %s is ignored: %s; the next recycle rewrites it.' % (host, path, exc))
    return found, notes


def _refusal(key: str, why: str) -> str:
    return ('%s: %s, so recycling would not help; stop it and keep it stopped with opsguard.anqicms.emergency_stop '
            '(-e \'{"opsguard_stop_instances": ["%s"]}\') and find the cause with opsguard.anqicms.diagnose.' % (key, why, key))


def recycle_plan(hosts: t.Any, recycle_instances: t.Any = None, min_healthy: t.Any = 1, max_parallel: t.Any = 1,
                 limit: t.Any = 3, window: t.Any = 3600, check_mode: bool = False, now: t.Any = None,
                 generated: t.Any = None) -> dict[str, t.Any]:
    """Which instances to recycle and which to refuse; see recycle_plan.yml."""
    if isinstance(recycle_instances, str):
        recycle_instances = [part.strip() for part in recycle_instances.split(',') if part.strip()]
    explicit = [str(e) for e in _list(recycle_instances)]
    keys = _stop_keys(explicit)
    now = float(now) if isinstance(now, (int, float)) and not isinstance(now, bool) else time.time()
    limit_n = _positive_count(limit)
    window_s = _positive_count(window)
    errors: list[str] = []
    notes: list[str] = []
    if limit_n is None:
        errors.append('opsguard_recycle_limit must be a positive count (got "%s").' % limit)
    if window_s is None:
        errors.append('opsguard_recycle_window must be a positive number of seconds (got "%s").' % window)
    serving = 0
    candidates: list[dict[str, t.Any]] = []
    unreachable: list[dict[str, str]] = []
    skipped: list[dict[str, t.Any]] = []
    matched: set[str] = set()
    for entry in _host_entries(hosts, 'recycle_plan'):
        host = str(entry['host'])
        memory = memory_of(entry.get('result'), entry.get('memory'))
        if memory is None:
            unreachable.append({'host': host, 'msg': str(_map(entry.get('result')).get('msg') or 'no result')})
            continue
        history, history_notes = _histories(entry.get('history'), host)
        notes.extend(history_notes)
        culprit = _map(memory.get('culprit'))
        critical = memory.get('verdict') == 'critical'
        for inst in _list(entry.get('instances')):
            inst = _map(inst)
            serving += 1 if inst.get('running') else 0
            named = [keys[k] for k in ('%s:%s' % (host, inst.get('name')), '%s:%s' % (host, inst.get('directory'))) if k in keys]
            is_culprit = (critical and culprit.get('kind') == 'anqicms'
                          and strip_dir(culprit.get('install_dir') or '') == inst.get('directory'))
            if not (named or (is_culprit and not explicit)):
                continue
            matched.update(named)
            key = '%s:%s' % (host, inst.get('name'))
            recent = [x for x in history.get(str(inst.get('directory')), []) if window_s and now - window_s < x <= now]
            cand = dict(inst, key=key, history=recent[-HISTORY_KEEP:], recycles_in_window=len(recent),
                        why='named in opsguard_instances' if named else
                            'culprit of a critical host: ' + ' '.join(str(r) for r in _list(memory.get('reasons'))))
            if not inst.get('running'):
                skipped.append(dict(cand, reason='not running (an instance emergency_stop stopped comes back with '
                                                 'opsguard.anqicms.recover)'))
            elif not inst.get('managed') or not inst.get('unit') or not inst.get('port'):
                errors.append(_refusal(key, 'it is not an instance of the app role (no systemd unit and port to start it '
                                            'and check its health)'))
            elif limit_n is not None and window_s is not None and len(recent) >= limit_n:
                errors.append(_refusal(key, 'it was recycled %d time(s) in the last %d s (opsguard_recycle_limit %d, '
                                            'opsguard_recycle_window %d): the leak comes back faster than recycling cures it'
                                       % (len(recent), window_s, limit_n, window_s)))
            else:
                candidates.append(cand)
        if critical and culprit and culprit.get('kind') != 'anqicms' and not explicit:
            errors.append('%s is critical but its culprit is %s (%s), not an AnQiCMS instance, so recycling would not help; '
                          'free memory with opsguard.anqicms.emergency_stop (it stops AnQiCMS instances, keeping '
                          'opsguard_min_healthy serving) and find the cause with opsguard.anqicms.diagnose.'
                          % (host, culprit.get('name'), culprit.get('kind')))
    for entry in explicit:
        if entry not in matched:
            errors.append('opsguard_instances entry "%s" matches no AnQiCMS instance on a reachable host (use host:name '
                          'or host:/install/dir); recycle restarts AnQiCMS instances only: for another culprit use '
                          'opsguard.anqicms.emergency_stop or opsguard.anqicms.diagnose.' % entry)
    count = min_healthy_count(min_healthy, serving)
    if count is None:
        errors.append('opsguard_min_healthy must be a count or a percentage from 0%% to 100%% such as "50%%" (got "%s").' % min_healthy)
        count = 0
    parallel = _positive_count(max_parallel)
    if parallel is None:
        errors.append('opsguard_max_parallel must be a positive count (got "%s").' % max_parallel)
        parallel = 1
    # Hosts are recycled opsguard_max_parallel at a time, the instances of one host one after the other.
    out_at_once = min(parallel, len({c['host'] for c in candidates}))
    allowed = max(serving - count, 0)
    if candidates and out_at_once > allowed:
        errors.append('recycling takes up to %d instance(s) out of rotation at once, but only %d of the %d serving may be out '
                      '(opsguard_min_healthy=%s keeps %d serving): %s'
                      % (out_at_once, allowed, serving, min_healthy, count,
                         'lower opsguard_max_parallel.' if allowed else
                         'lower opsguard_min_healthy, or add capacity first: recycling one instance takes it out of rotation '
                         'for the stop, the start and the health check.'))
    return {
        'generated': generated or utc_now(), 'check_mode': bool(check_mode), 'now': now,
        'serving': serving, 'min_healthy': str(min_healthy), 'min_healthy_count': count, 'max_parallel': str(max_parallel),
        'limit': limit_n, 'window': window_s,
        'selected': candidates, 'skipped': skipped, 'unreachable': unreachable, 'notes': notes, 'errors': errors,
    }


def recycle_history(selected: t.Any, now: t.Any) -> dict[str, t.Any]:
    """The history file content of a selected instance after one more recycle at ``now``."""
    selected = _map(selected)
    if not isinstance(selected.get('directory'), str) or not isinstance(now, (int, float)) or isinstance(now, bool):
        raise AnsibleFilterError('recycle_history: needs an entry of recycle_plan.selected and the plan time, got %r, %r'
                                 % (selected.get('directory'), now))
    times = [x for x in _list(selected.get('history')) if isinstance(x, (int, float)) and not isinstance(x, bool)]
    return {'directory': selected['directory'], 'recycled_at': (times + [int(now)])[-HISTORY_KEEP:]}


def recycle_report(plan: t.Any, hosts: t.Any, finished: t.Any = None) -> dict[str, t.Any]:
    """The plan with the outcome of each selected instance: ``recycled`` entries from the hosts' ``done`` lists, a
    ``failed`` entry (with the host's failure) for each selected instance that has none."""
    if not isinstance(plan, Mapping):
        raise AnsibleFilterError('recycle_report: the input must be the plan of recycle_plan, got %s' % type(plan).__name__)
    recycled: list[dict[str, t.Any]] = []
    for entry in _list(hosts):
        entry = _map(entry)
        done = [d for d in _list(entry.get('done')) if isinstance(d, Mapping)]
        recycled.extend(dict(d) for d in done)
        names = {d.get('name') for d in done}
        for sel in _list(entry.get('selected')):
            sel = _map(sel)
            if sel.get('name') not in names:
                recycled.append({'host': entry.get('host'), 'name': sel.get('name'), 'sites': sel.get('sites'), 'outcome': 'failed',
                                 'error': entry.get('failure') or 'the run ended before this instance was recycled'})
    failed = ['%s:%s' % (r.get('host'), r.get('name')) for r in recycled if r.get('outcome') != 'recycled']
    return dict(plan, recycled=recycled, failed=failed, finished=finished or utc_now())


class FilterModule:
    """Recycle filters."""

    def filters(self) -> dict[str, t.Callable]:
        return {
            'recycle_plan': recycle_plan,
            'recycle_history': recycle_history,
            'recycle_history_path': history_path,
            'recycle_report': recycle_report,
        }
