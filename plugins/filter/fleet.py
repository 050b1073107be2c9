# Copyright: opsguard maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet playbooks' decisions: instances of a host, emergency stop plan and report, fleet memory report, diagnosis.

Every filter reads memory as the ``opsguard_memory`` fact of opsguard.anqicms.memory_facts, taken from the
registered result's ``ansible_facts``; the registered result itself only says whether the host answered.
Documentation: one ``<filter name>.yml`` per filter next to this file.
"""

from __future__ import annotations

import datetime
import math
import typing as t
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.module_utils.memory import relevant_kills
from ansible_collections.opsguard.anqicms.plugins.plugin_utils.naming import DEFAULT_BASE_DIR, NamingError, normalize_instances, strip_dir

MIB = 1048576
LEVELS = {'ok': 0, 'warning': 1, 'critical': 2, 'unknown': 2}
FAIL_ON = ('critical', 'warning', 'never')
CONNECTIONS_PER_PROCESS = 20  # AnQiCMS opens up to 20 connections per site per process (fixed in 3.5.8)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _map(value: t.Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _list(value: t.Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []


def _int(value: t.Any, default: int = 0) -> int:
    """Jinja's ``int``: a number or a numeric string, else ``default``."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return default
    return int(number) if math.isfinite(number) else default


def memory_of(result: t.Any, memory: t.Any = None) -> Mapping | None:
    """The memory_facts payload of a host, or None when the host did not answer.

    ``memory`` (the ``opsguard_memory`` fact) wins when given; else ``ansible_facts.opsguard_memory`` of the
    registered result. An unreachable, failed or skipped result has none.
    """
    if isinstance(memory, Mapping) and memory.get('verdict') is not None:
        return memory
    result = _map(result)
    if result.get('unreachable') or result.get('failed') or result.get('skipped'):
        return None
    facts = _map(_map(result.get('ansible_facts')).get('opsguard_memory'))
    return facts if facts.get('verdict') is not None else None


def _failure(result: t.Any) -> tuple[str, str]:
    """('unreachable' | 'failed', message) of a host without memory facts."""
    result = _map(result)
    kind = 'unreachable' if result.get('unreachable') else 'failed'
    return kind, str(result.get('msg') or 'no result')


def _host_entries(hosts: t.Any, what: str) -> list[Mapping]:
    if isinstance(hosts, Mapping):
        hosts = [dict(value, host=key) if isinstance(value, Mapping) else value for key, value in hosts.items()]
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError('%s: the input must be a list of {host, result, ...} per host, got %s' % (what, type(hosts).__name__))
    entries = []
    for entry in hosts:
        if not isinstance(entry, Mapping) or not entry.get('host'):
            raise AnsibleFilterError('%s: every entry must be a dict with a host name, got %r' % (what, entry))
        entries.append(entry)
    return sorted(entries, key=lambda e: str(e['host']))


def _anqicms_services(memory: Mapping) -> list[Mapping]:
    """Every AnQiCMS service memory_facts saw, those outside the counted cgroup included (never culprits)."""
    return [s for s in _list(memory.get('services')) + _list(memory.get('outside_limit'))
            if isinstance(s, Mapping) and s.get('kind') == 'anqicms']


# ---------------------------------------------------------------- host_instances

def host_instances(memory: t.Any, app_instances: t.Any = None, host: t.Any = None, address: t.Any = None,
                   base_dir: t.Any = DEFAULT_BASE_DIR) -> list[dict[str, t.Any]]:
    """The AnQiCMS instances of one host: the managed ones (app_instances) and any other running AnQiCMS process."""
    if not host:
        raise AnsibleFilterError('host_instances: host (the inventory name) is required')
    memory = _map(memory)
    running = _anqicms_services(memory)
    try:
        managed = normalize_instances(app_instances, base_dir or DEFAULT_BASE_DIR)
    except NamingError as err:
        raise AnsibleFilterError('host_instances on %s: %s' % (host, err)) from None
    address = address or host
    out: list[dict[str, t.Any]] = []
    dirs = set()
    for inst in managed:
        directory = inst['directory']
        dirs.add(directory)
        svc = next((s for s in running if strip_dir(s.get('install_dir') or '') == directory), None)
        out.append({
            'host': host, 'address': address, 'name': inst['name'], 'port': inst.get('port'), 'directory': directory,
            'exe': inst['exe'], 'unit': inst['unit'], 'managed': True,
            'sites': [name for name in inst['site_names'] if name],
            'running': svc is not None,
            'rss_bytes': svc.get('rss_bytes') or 0 if svc else 0,
            'pids': list(svc.get('pids') or []) if svc else [],
        })
    for svc in running:
        directory = strip_dir(svc.get('install_dir') or '')
        if not svc.get('install_dir') or directory in dirs:
            continue
        dirs.add(directory)
        out.append({
            'host': host, 'address': address, 'name': directory, 'port': None, 'directory': directory,
            'exe': svc.get('exe'), 'unit': None, 'managed': False, 'sites': [], 'running': True,
            'rss_bytes': svc.get('rss_bytes') or 0, 'pids': list(svc.get('pids') or []),
        })
    return out


# ---------------------------------------------------------------- emergency_plan

def min_healthy_count(min_healthy: t.Any, serving: int) -> int | None:
    """Instances that must keep serving: a count, or a percentage of ``serving`` rounded up; None when invalid."""
    if isinstance(min_healthy, bool):
        return None
    if isinstance(min_healthy, int):
        return min_healthy if min_healthy >= 0 else None
    text = str(min_healthy).strip()
    if text.endswith('%') and text[:-1].isdigit() and text[:-1].isascii():
        percent = int(text[:-1])
        return -(-serving * percent // 100) if percent <= 100 else None
    if text.isdigit() and text.isascii():
        return int(text)
    return None


def _positive_count(value: t.Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    text = str(value).strip()
    return int(text) if text.isdigit() and text.isascii() and int(text) > 0 else None


def _stop_keys(explicit: list[str]) -> dict[str, str]:
    """host:instance keys to match (directories without trailing slash) -> the entry as given."""
    keys = {}
    for entry in explicit:
        host, dummy, instance = entry.partition(':')
        keys['%s:%s' % (host, strip_dir(instance) if instance.startswith('/') else instance)] = entry
    return keys


def emergency_plan(hosts: t.Any, stop_instances: t.Any = None, min_healthy: t.Any = 1, max_parallel: t.Any = 1,
                   check_mode: bool = False, generated: t.Any = None) -> dict[str, t.Any]:
    """Which instances to stop, most urgent first, keeping at least min_healthy instances serving."""
    if isinstance(stop_instances, str):
        stop_instances = [part.strip() for part in stop_instances.split(',') if part.strip()]
    explicit = [str(e) for e in _list(stop_instances)]
    keys = _stop_keys(explicit)
    serving = 0
    candidates: list[dict[str, t.Any]] = []
    unreachable: list[dict[str, str]] = []
    notes: list[str] = []
    errors: list[str] = []
    matched: set[str] = set()
    for entry in _host_entries(hosts, 'emergency_plan'):
        host = str(entry['host'])
        memory = memory_of(entry.get('result'), entry.get('memory'))
        if memory is None:
            unreachable.append({'host': host, 'msg': _failure(entry.get('result'))[1]})
            continue
        culprit = _map(memory.get('culprit'))
        critical = memory.get('verdict') == 'critical'
        for inst in _list(entry.get('instances')):
            serving += 1 if inst.get('running') else 0
            named = [keys[k] for k in ('%s:%s' % (host, inst.get('name')), '%s:%s' % (host, inst.get('directory'))) if k in keys]
            is_culprit = (critical and culprit.get('kind') == 'anqicms'
                          and strip_dir(culprit.get('install_dir') or '') == inst.get('directory'))
            if named or (is_culprit and not explicit):
                matched.update(named)
                candidates.append(dict(inst, **{
                    'priority': 0 if named else 1,
                    'available_percent': _map(memory.get('limit')).get('available_percent', 100),
                    'verdict': memory.get('verdict'),
                    'why': 'named in opsguard_stop_instances' if named else
                           'culprit of a critical host: ' + ' '.join(str(r) for r in _list(memory.get('reasons'))),
                }))
        if critical and culprit and culprit.get('kind') != 'anqicms':
            notes.append('%s is critical but its culprit is %s (%s); emergency_stop stops AnQiCMS instances only: '
                         'run opsguard.anqicms.diagnose.' % (host, culprit.get('name'), culprit.get('kind')))
    for entry in explicit:
        if entry not in matched:
            errors.append('opsguard_stop_instances entry "%s" matches no instance on a reachable host (use host:name or host:/install/dir).' % entry)
    count = min_healthy_count(min_healthy, serving)
    if count is None:
        errors.append('opsguard_min_healthy must be a count or a percentage from 0%% to 100%% such as "50%%" (got "%s").' % min_healthy)
        count = 0
    if _positive_count(max_parallel) is None:
        errors.append('opsguard_max_parallel must be a positive count (got "%s").' % max_parallel)
    allowed = max(serving - count, 0)
    selected: list[dict[str, t.Any]] = []
    skipped: list[dict[str, t.Any]] = []
    for cand in sorted(candidates, key=lambda c: (c['priority'], c['available_percent'] if c['available_percent'] is not None else 100)):
        if not cand.get('running'):
            skipped.append(dict(cand, reason='already stopped'))
        elif len(selected) < allowed:
            selected.append(cand)
        else:
            skipped.append(dict(cand, reason='stopping it would leave %d serving instance(s), below opsguard_min_healthy=%s (%d)'
                                % (serving - len(selected) - 1, min_healthy, count)))
    return {
        'generated': generated or utc_now(), 'check_mode': bool(check_mode),
        'serving': serving, 'min_healthy': str(min_healthy), 'min_healthy_count': count, 'max_parallel': str(max_parallel),
        'selected': selected, 'skipped': skipped, 'unreachable': unreachable, 'notes': notes, 'errors': errors,
    }


# ---------------------------------------------------------------- emergency_report

def emergency_report(plan: t.Any, hosts: t.Any, finished: t.Any = None) -> dict[str, t.Any]:
    """The plan with what happened to each selected instance: outcome, memory before and after."""
    if not isinstance(plan, Mapping):
        raise AnsibleFilterError('emergency_report: the input must be the plan of emergency_plan, got %s' % type(plan).__name__)
    stopped: list[dict[str, t.Any]] = []
    entries = hosts if isinstance(hosts, (list, tuple)) else []
    for entry in entries:
        entry = _map(entry)
        host = entry.get('host')
        before = _map(memory_of(entry.get('before')))
        after = memory_of(entry.get('after'))
        available_before = _map(before.get('limit')).get('available_bytes')
        available_after = _map(after.get('limit')).get('available_bytes') if after else None
        done = [d for d in _list(entry.get('done')) if isinstance(d, Mapping)]
        for item in done:
            stopped.append(dict(item, **{
                'verdict_before': before.get('verdict'),
                'verdict_after': after.get('verdict') if after else 'unknown',
                'available_before_bytes': available_before,
                'available_after_bytes': available_after,
                'recovered_bytes': (available_after - available_before
                                    if isinstance(available_after, int) and isinstance(available_before, int) else None),
            }))
        done_names = {d.get('name') for d in done}
        for sel in _list(entry.get('selected')):
            if sel.get('name') in done_names:
                continue
            stopped.append({'host': host, 'name': sel.get('name'), 'sites': sel.get('sites'), 'outcome': 'failed',
                            'error': entry.get('failure') or 'the run ended before this instance was handled',
                            'verdict_before': before.get('verdict')})
    return dict(plan, stopped=stopped, finished=finished or utc_now())


# ---------------------------------------------------------------- fleet_report

def fleet_report(hosts: t.Any, fail_on: t.Any = 'critical', generated: t.Any = None) -> dict[str, t.Any]:
    """memory_check's report: one line per host, counts per verdict and the hosts at or above fail_on."""
    if fail_on not in FAIL_ON:
        raise AnsibleFilterError('fleet_report: fail_on must be one of %s (got %r)' % (', '.join(FAIL_ON), fail_on))
    rows: list[dict[str, t.Any]] = []
    for entry in _host_entries(hosts, 'fleet_report'):
        host = str(entry['host'])
        memory = memory_of(entry.get('result'), entry.get('memory'))
        if memory is None:
            kind, msg = _failure(entry.get('result'))
            rows.append({'host': host, 'verdict': 'unknown', 'level': LEVELS['unknown'],
                         'reasons': ['%s: %s' % ('unreachable' if kind == 'unreachable' else 'check failed', msg)],
                         'culprit': None, 'limit_bytes': None, 'limit_source': None, 'available_bytes': None,
                         'pressure_some_avg10': None, 'trend': None, 'failure': kind})
            continue
        limit = _map(memory.get('limit'))
        pressure = memory.get('pressure')
        trend = memory.get('trend')
        verdict = memory.get('verdict')
        rows.append({
            'host': host, 'verdict': verdict, 'level': LEVELS.get(verdict, LEVELS['unknown']),
            'reasons': _list(memory.get('reasons')),
            'culprit': _map(memory.get('culprit')).get('name'),
            'limit_bytes': limit.get('bytes'), 'limit_source': limit.get('source'), 'available_bytes': limit.get('available_bytes'),
            'pressure_some_avg10': _map(_map(pressure).get('some')).get('avg10') if pressure else None,
            'trend': _list(_map(trend).get('suspects')) if trend else None,
            'failure': None,
        })
    failing = [] if fail_on == 'never' else [r['host'] for r in rows if r['level'] >= LEVELS[fail_on]]
    return {
        'generated': generated or utc_now(), 'fail_on': fail_on,
        'summary': {verdict: sum(1 for r in rows if r['verdict'] == verdict) for verdict in ('ok', 'warning', 'critical', 'unknown')},
        'hosts': rows,
        'failing': failing,
    }


# ---------------------------------------------------------------- diagnose

def mariadb_variables(rows: t.Any) -> dict[str, t.Any]:
    """{Variable_name: Value} from community.mysql.mysql_query's query_result (a list per query) or a dict."""
    if isinstance(rows, Mapping):
        return dict(rows)
    out: dict[str, t.Any] = {}
    for item in _list(rows):
        for row in (item if isinstance(item, (list, tuple)) else [item]):
            if isinstance(row, Mapping) and 'Variable_name' in row:
                out[str(row['Variable_name'])] = row.get('Value')
    return out


def _oom_recommendation(memory: Mapping) -> str | None:
    oom = _map(memory.get('oom'))
    limit = _map(memory.get('limit'))
    try:
        kills = relevant_kills(dict(oom), dict(limit, source=limit.get('source') or 'meminfo'))
    except (KeyError, TypeError, AttributeError):
        kills = []
    if not kills:
        return None
    victims = ', '.join('%s (pid %s)' % (k.get('victim') or '?', k.get('pid') if k.get('pid') is not None else '?') for k in kills)
    return ('The kernel OOM killer has acted here recently (%d kill(s) in the last %d s: %s): the limits above are not yet enough.'
            % (len(kills), _int(oom.get('recent_window_seconds'), 900), victims))


def diagnose_recommendations(memory: t.Any, mariadb: t.Any = None, go_env: t.Any = None) -> list[str]:
    """Plain recommendations for one host from its memory facts, MariaDB variables and the Go environment of each instance."""
    memory = _map(memory)
    recs: list[str] = []
    app = [s for s in _list(memory.get('services')) if isinstance(s, Mapping) and s.get('kind') == 'anqicms']
    for name, env in _map(go_env).items():
        if 'GOMEMLIMIT=' not in str(env or ''):
            recs.append('%s runs without GOMEMLIMIT: the Go heap grows until the kernel kills it. Deploy it with the '
                        'opsguard.anqicms.app role (GOMEMLIMIT below MemoryHigh below MemoryMax).' % name)
    for svc in app:
        if not _map(svc.get('cgroup')).get('limit_bytes'):
            recs.append('%s has no memory limit of its own: one leaking instance can starve the database and the other '
                        'instances. Set MemoryHigh/MemoryMax (app role).' % svc.get('name'))
    for svc in _list(_map(memory.get('trend')).get('services')):
        if isinstance(svc, Mapping) and svc.get('leak_suspected'):
            minutes = svc.get('minutes_to_limit')
            recs.append('%s grows %s MiB/min%s: plan a graceful restart (opsguard.anqicms.emergency_stop, then recover) '
                        'and report the leak.' % (svc.get('name'), round((svc.get('growth_bytes_per_minute') or 0) / MIB, 1),
                                                  ', the limit is reached in about %d min' % int(round(minutes, 0)) if minutes else ''))
    db = mariadb_variables(mariadb)
    limit_bytes = _map(memory.get('limit')).get('bytes')
    if 'max_connections' in db:
        pools = len(app) * CONNECTIONS_PER_PROCESS
        if _int(db['max_connections']) < pools:
            recs.append('max_connections is %s, below the %d connections the %d AnQiCMS process(es) may open (20 per site per '
                        'process, fixed in 3.5.8): raise it (opsguard.anqicms.database).' % (db['max_connections'], pools, len(app)))
        total = _int(db.get('Innodb_buffer_pool_pages_total'))
        if total > 0:
            used = 1 - _int(db.get('Innodb_buffer_pool_pages_free')) / total
            pool = _int(db.get('innodb_buffer_pool_size'))
            if used < 0.5 and limit_bytes and pool > limit_bytes * 0.25:
                recs.append('The InnoDB buffer pool is %d MiB (%d %% of the limit) but only %d %% used: shrink it '
                            '(opsguard.anqicms.database).' % (pool // MIB, int(round(100 * pool / limit_bytes, 0)), int(round(used * 100, 0))))
    oom = _oom_recommendation(memory)
    if oom:
        recs.append(oom)
    system = _map(memory.get('system'))
    swap_total = system.get('swap_total') or 0
    swap_used = system.get('swap_used') or 0
    if swap_total and swap_used > swap_total * 0.5:
        recs.append('Swap is %d %% used: the host is paging; latency follows.' % int(round(100 * swap_used / swap_total, 0)))
    return recs


def diagnose_host(memory: t.Any, mariadb: t.Any = None, go_env: t.Any = None, journal: t.Any = None) -> dict[str, t.Any]:
    """diagnose's result for one host: memory by kind and by service, trend, OOM history, MariaDB, journal, recommendations."""
    memory = _map(memory)
    if memory.get('verdict') is None:
        raise AnsibleFilterError('diagnose_host: the input must be the opsguard_memory fact of opsguard.anqicms.memory_facts')
    services = [s for s in _list(memory.get('services')) if isinstance(s, Mapping)]
    by_kind: dict[str, int] = {}
    for svc in services:
        by_kind[str(svc.get('kind'))] = by_kind.get(str(svc.get('kind')), 0) + (svc.get('rss_bytes') or 0)
    limit = _map(memory.get('limit'))
    return {
        'verdict': memory.get('verdict'), 'reasons': _list(memory.get('reasons')), 'culprit': memory.get('culprit'),
        'limit': {'bytes': limit.get('bytes'), 'source': limit.get('source'), 'available_bytes': limit.get('available_bytes')},
        'by_kind': [{'kind': kind, 'rss_bytes': by_kind[kind]} for kind in sorted(by_kind)],
        'services': [{key: svc.get(key) for key in ('name', 'kind', 'rss_bytes', 'share_of_limit', 'unit')} for svc in services],
        'trend': memory.get('trend'), 'oom': memory.get('oom'), 'mariadb': mariadb_variables(mariadb),
        'journal_tail': [str(line) for line in _list(journal)],
        'recommendations': diagnose_recommendations(memory, mariadb, go_env),
    }


class FilterModule:
    """Fleet playbook decisions."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {
            'host_instances': host_instances,
            'emergency_plan': emergency_plan,
            'emergency_report': emergency_report,
            'fleet_report': fleet_report,
            'diagnose_recommendations': diagnose_recommendations,
            'diagnose_host': diagnose_host,
        }
