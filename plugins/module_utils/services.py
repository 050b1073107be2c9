# -*- coding: utf-8 -*-
# Copyright: contributors to opsguard.anqicms
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Services: processes grouped by matcher (AnQiCMS per install directory, MariaDB, Redis, ...), their own cgroup
limits, the largest processes and growth over samples (leak suspicion)."""

from __future__ import annotations

import fnmatch
import os
import re

from ansible_collections.opsguard.anqicms.plugins.module_utils import cgroups, procfs
from ansible_collections.opsguard.anqicms.plugins.module_utils.cgroups import MIB, percent_of

TYPE_CHECKING = False  # typing only for type checkers: a watcher run every few seconds pays for every import
if TYPE_CHECKING:  # pragma: no cover
    import typing as t

LEAK_MIN_BYTES = 2 * MIB
MATCHERS_MAX = 100
MATCHER_NAME_MAX = 128
PATTERNS_MAX = 64
PATTERN_MAX = 1024
KINDS = ('anqicms', 'database', 'redis', 'memcached', 'nginx', 'php-fpm', 'other')

DEFAULT_MATCHERS: list[dict[str, t.Any]] = [
    {'name': 'anqicms', 'kind': 'anqicms', 'process_name': ['anqicms'], 'exe': ['*/anqicms'], 'per_executable': True},
    {'name': 'mariadb', 'kind': 'database', 'process_name': ['mariadbd', 'mysqld', 'mysqld_safe', 'mariadbd-safe'],
     'unit': ['mariadb.service', 'mysql.service', 'mysqld.service']},
    {'name': 'redis', 'kind': 'redis', 'process_name': ['redis-server', 'redis-sentinel'],
     'unit': ['redis.service', 'redis-server.service', 'redis-server@*.service']},
    {'name': 'memcached', 'kind': 'memcached', 'process_name': ['memcached'], 'unit': ['memcached.service', 'memcached@*.service']},
    {'name': 'nginx', 'kind': 'nginx', 'process_name': ['nginx'], 'unit': ['nginx.service']},
    {'name': 'php-fpm', 'kind': 'php-fpm', 'process_name': ['php-fpm*'], 'unit': ['php*-fpm.service']},
]


# ---------------------------------------------------------------- processes

def add_details(root: str, procs: list[dict[str, t.Any]], pids: set[int]) -> None:
    """USS, PSS and swap from smaps_rollup for the given PIDs (reading it costs a page-table walk per process)."""
    for proc in procs:
        if proc['pid'] in pids and proc.get('pss') is None:
            smaps = procfs.read_smaps_rollup(proc['pid'], cgroups.path_under(root, 'proc'))
            if smaps:
                proc.update(smaps)


# ---------------------------------------------------------------- matchers and services

class GlobSet:
    """Shell-style patterns matched as ``fnmatch.fnmatchcase`` would: literal ones by set lookup, the others by one
    compiled expression (compiling costs more than a whole pass would save when a watcher starts afresh every run)."""

    __slots__ = ('literals', 'pattern')

    def __init__(self, patterns: list[str]) -> None:
        wild = [p for p in patterns if any(c in p for c in '*?[')]
        self.literals = frozenset(p for p in patterns if p not in wild)
        self.pattern = re.compile('|'.join('(?:%s)' % fnmatch.translate(p) for p in wild)) if wild else None

    def match(self, value: str) -> bool:
        return value in self.literals or (self.pattern is not None and self.pattern.match(value) is not None)


def _glob_re(patterns: list[str] | None) -> GlobSet | None:
    """The matcher of a list of shell-style patterns."""
    if not patterns:
        return None
    return GlobSet(patterns)


def compile_matchers(user: list[dict[str, t.Any]] | None, defaults: bool = True) -> list[dict[str, t.Any]]:
    """Validate matchers (raising ValueError with the fix) and append the defaults."""
    result = []
    if len(user or []) > MATCHERS_MAX:
        raise ValueError('%d matchers given; at most %d are allowed.' % (len(user or []), MATCHERS_MAX))
    for index, raw in enumerate(list(user or []) + (DEFAULT_MATCHERS if defaults else [])):
        if not isinstance(raw, dict):
            raise ValueError('matchers[%d] is %r, not a dictionary with name and exe, process_name, unit or cmdline.' % (index, raw))
        matcher = dict(raw)
        name = matcher.get('name')
        if not name or not isinstance(name, str):
            raise ValueError('matchers[%d] has no name; give each matcher a name such as "anqicms-shop".' % index)
        if len(name) > MATCHER_NAME_MAX or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise ValueError('matchers[%d] name %r: use at most %d printable characters, such as "anqicms-shop".'
                             % (index, name[:MATCHER_NAME_MAX], MATCHER_NAME_MAX))
        if matcher.get('kind', 'other') not in KINDS:
            raise ValueError('matcher %s has kind %r; expected one of %s.' % (name, matcher.get('kind'), ', '.join(KINDS)))
        matcher.setdefault('kind', 'other')
        if not any(matcher.get(k) for k in ('exe', 'process_name', 'unit', 'cmdline')):
            raise ValueError('matcher %s matches nothing: give at least one of exe, process_name, unit or cmdline.' % name)
        for field in ('exe', 'process_name', 'unit'):
            patterns = matcher.get(field) or []
            if isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns):
                raise ValueError('matcher %s: %s must be a list of shell-style patterns (strings).' % (name, field))
            if len(patterns) > PATTERNS_MAX or any(len(p) > PATTERN_MAX or '\0' in p for p in patterns):
                raise ValueError('matcher %s: %s takes at most %d patterns of at most %d characters, without NUL bytes.'
                                 % (name, field, PATTERNS_MAX, PATTERN_MAX))
        pattern = matcher.get('cmdline')
        if pattern:
            if not isinstance(pattern, str) or len(pattern) > PATTERN_MAX:
                raise ValueError('matcher %s: cmdline must be a regular expression of at most %d characters.' % (name, PATTERN_MAX))
            try:
                matcher['_cmdline_re'] = re.compile(pattern)
            except (re.error, OverflowError, RecursionError, ValueError) as exc:
                raise ValueError('matcher %s: cmdline %r is not a valid regular expression (%s).' % (name, pattern[:200], exc)) from exc
        for field in ('exe', 'process_name', 'unit'):
            try:
                matcher['_%s_re' % field] = _glob_re(matcher.get(field))
            except (re.error, OverflowError, RecursionError, ValueError) as exc:
                raise ValueError('matcher %s: %s patterns cannot be used (%s).' % (name, field, exc)) from exc
        if matcher.get('per_executable') is None:
            matcher['per_executable'] = matcher['kind'] == 'anqicms'
        result.append(matcher)
    return result


def _unit(proc: dict[str, t.Any]) -> str | None:
    """The systemd unit of a process row, computed once per row (rows are matched and grouped several times)."""
    if '_unit' not in proc:
        proc['_unit'] = procfs.unit_of(proc.get('cgroups') or {})
    return proc['_unit']


def match_process(proc: dict[str, t.Any], matchers: list[dict[str, t.Any]]) -> dict[str, t.Any] | None:
    """The first matcher any criterion of which matches the process."""
    unit = _unit(proc) or ''
    for matcher in matchers:
        for field, value in (('_exe_re', proc['exe']), ('_process_name_re', proc['name']), ('_unit_re', unit)):
            pattern = matcher.get(field)
            if pattern is not None and value and pattern.match(value):
                return matcher
        if matcher.get('_cmdline_re') is not None and matcher['_cmdline_re'].search(proc.get('cmdline') or ''):
            return matcher
    return None


def _sum_optional(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def group_services(procs: list[dict[str, t.Any]], matchers: list[dict[str, t.Any]], limit_bytes: int | None,
                   hierarchy: dict[str, t.Any] | None = None, cgroup: dict[str, t.Any] | None = None,
                   in_limit: bool = True) -> list[dict[str, t.Any]]:
    """Group processes into services; children of a matched process belong to it.

    ``in_limit=False``: the processes are not charged to the effective limit; they get no share of it
    (``share_of_limit`` is null) and no own-cgroup reading.
    """
    by_pid = {p['pid']: p for p in procs}
    keys: dict[int, tuple[str, ...]] = {}
    meta: dict[tuple[str, ...], dict[str, t.Any]] = {}
    memo: dict[tuple[t.Any, ...], dict[str, t.Any] | None] = {}
    for proc in procs:
        if '_matcher' not in proc:
            # match_process depends on these fields only; most processes share them with others (workers, sleepers)
            key = (proc['exe'], proc['name'], _unit(proc), proc.get('cmdline'))
            if key not in memo:
                memo[key] = match_process(proc, matchers)
            proc['_matcher'] = memo[key]
        matcher = proc['_matcher']
        if matcher is None:
            continue
        key = (matcher['name'], proc['exe'] if matcher['per_executable'] else '')
        keys[proc['pid']] = key
        meta.setdefault(key, {'matcher': matcher, 'exe': proc['exe']})
    for proc in procs:
        if proc['pid'] in keys:
            continue
        parent, depth = proc.get('ppid'), 0
        while parent and parent in by_pid and depth < 32:
            if parent in keys:
                keys[proc['pid']] = keys[parent]
                break
            parent, depth = by_pid[parent].get('ppid'), depth + 1
    groups: dict[tuple[str, ...], list[dict[str, t.Any]]] = {}
    for proc in procs:
        key = keys.get(proc['pid'])
        if key is None:
            unit = _unit(proc)
            label = unit if unit and unit.endswith('.service') else (proc['name'] or 'pid %d' % proc['pid'])
            key = ('other', label)
            meta.setdefault(key, {'matcher': {'name': label, 'kind': 'other', 'per_executable': False}, 'exe': proc['exe']})
        groups.setdefault(key, []).append(proc)
    cg_cache: dict[str, dict[str, t.Any] | None] = {}
    services = []
    for key, members in groups.items():
        matcher = meta[key]['matcher']
        exe = meta[key]['exe']
        units = [_unit(p) for p in members]
        unit = max(set(units), key=units.count) if units else None
        name = matcher['name']
        if matcher['per_executable'] and exe:
            name = '%s:%s' % (name, os.path.dirname(exe))
        rss = sum(p['rss'] for p in members)
        service = {
            'name': name, 'kind': matcher['kind'], 'exe': exe or None, 'unit': unit,
            'install_dir': os.path.dirname(exe) if matcher['kind'] == 'anqicms' and exe else None,
            'pids': sorted(p['pid'] for p in members), 'rss_bytes': rss,
            'uss_bytes': _sum_optional([p.get('uss') for p in members]),
            'pss_bytes': _sum_optional([p.get('pss') for p in members]),
            'swap_bytes': _sum_optional([p.get('swap') for p in members]),
            'share_of_limit': percent_of(rss, limit_bytes) if in_limit else None,
            'cgroup': None,
            'in_limit': in_limit,
        }
        if hierarchy is not None and in_limit:
            service['cgroup'] = own_cgroup(hierarchy, cgroup, members, cg_cache)
        services.append(service)
    services.sort(key=lambda s: s['rss_bytes'], reverse=True)
    return services


def own_cgroup(hierarchy: dict[str, t.Any], cgroup: dict[str, t.Any] | None, members: list[dict[str, t.Any]],
               cache: dict[str, dict[str, t.Any] | None]) -> dict[str, t.Any] | None:
    """The tightest limit set on the service's cgroup or an ancestor below the host's scope (a unit's MemoryMax, a container)."""
    key_name = 'memory' if hierarchy['version'] == 1 else 'unified'
    paths = [cgroups.cgroup_under_mount(hierarchy, (p.get('cgroups') or {}).get(key_name)) for p in members]
    paths = [p for p in paths if p and p != '/']
    if not paths:
        return None
    start = max(set(paths), key=paths.count)
    stop = set(cgroups.cgroup_ancestors((cgroup or {}).get('scope_path') or '/'))
    # Only the limit file of each ancestor is read to find the tightest; the whole cgroup only for that one.
    best_rel, best_max = None, None
    for rel in cgroups.cgroup_ancestors(start):
        if rel in stop:
            break
        key = 'max:' + rel
        if key not in cache:
            cache[key] = {'max_bytes': cgroups.read_max(hierarchy, rel)}
        limit = (cache[key] or {}).get('max_bytes')
        if limit is not None and (best_max is None or limit < best_max):
            best_rel, best_max = rel, limit
    if best_rel is None:
        return None
    if best_rel not in cache:
        cache[best_rel] = cgroups.read_cgroup(hierarchy, best_rel)
    best = cache[best_rel]
    if best is None or best['max_bytes'] is None:
        return None
    used = best['working_set_bytes'] if best['working_set_bytes'] is not None else best['usage_bytes']
    return {
        'path': best['path'], 'limit_bytes': best['max_bytes'], 'high_bytes': best['high_bytes'],
        'usage_bytes': best['usage_bytes'], 'working_set_bytes': best['working_set_bytes'],
        'share': percent_of(used, best['max_bytes']),
        'oom_kills': (best.get('events') or {}).get('oom_kill'),
        'events': best.get('events'),
    }


def top_processes(procs: list[dict[str, t.Any]], services: list[dict[str, t.Any]], count: int) -> list[dict[str, t.Any]]:
    owner = {pid: s['name'] for s in services for pid in s['pids']}
    largest = sorted(procs, key=lambda p: p['rss'], reverse=True)[:max(count, 0)]
    return [{'pid': p['pid'], 'name': p['name'], 'exe': p['exe'] or None, 'rss_bytes': p['rss'], 'uss_bytes': p.get('uss'),
             'pss_bytes': p.get('pss'), 'swap_bytes': p.get('swap'), 'service': owner.get(p['pid'])} for p in largest]


# ---------------------------------------------------------------- trend

def _slope_per_minute(points: list[tuple[float, int]]) -> float:
    count = len(points)
    mean_t = sum(p[0] for p in points) / count
    mean_v = sum(p[1] for p in points) / count
    var = sum((p[0] - mean_t) ** 2 for p in points)
    if var <= 0:
        return 0.0
    return sum((p[0] - mean_t) * (p[1] - mean_v) for p in points) / var * 60.0


def compute_trend(samples: list[tuple[float, dict[str, int]]], kinds: dict[str, str], leak_mib_per_minute: float,
                  limit_bytes: int | None = None) -> dict[str, t.Any]:
    """Growth per service over the samples.

    ``leak_suspected`` when the least-squares growth is at least ``leak_mib_per_minute``, the service grew by at
    least LEAK_MIN_BYTES in total (short windows must not extrapolate page-level noise), grew in at least half of
    the intervals and never shrank by more than 1 % between two samples.
    """
    start = samples[0][0]
    names = sorted({name for _t, values in samples for name in values})
    result = []
    for name in names:
        points = [(ts - start, values[name]) for ts, values in samples if name in values]
        if len(points) < 2:
            continue
        deltas = [b[1] - a[1] for a, b in zip(points, points[1:])]
        rate = _slope_per_minute(points)
        grew = sum(1 for d in deltas if d > 0)
        shrank = any(d < -0.01 * max(a[1], 1) for d, a in zip(deltas, points))
        net = points[-1][1] - points[0][1]
        leak = rate >= leak_mib_per_minute * MIB and net >= LEAK_MIN_BYTES and grew * 2 >= len(deltas) and not shrank
        entry = {'name': name, 'kind': kinds.get(name, 'other'), 'rss_bytes': [p[1] for p in points],
                 'growth_bytes_per_minute': int(rate), 'leak_suspected': leak, 'minutes_to_limit': None}
        if leak and limit_bytes and rate > 0:
            entry['minutes_to_limit'] = round(max(limit_bytes - points[-1][1], 0) / rate, 1)
        result.append(entry)
    result.sort(key=lambda e: e['growth_bytes_per_minute'], reverse=True)
    return {
        'samples': len(samples), 'seconds': round(samples[-1][0] - start, 2),
        'services': result,
        'leak_suspected': any(e['leak_suspected'] for e in result),
        'suspects': [e['name'] for e in result if e['leak_suspected']],
    }
