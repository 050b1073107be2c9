# -*- coding: utf-8 -*-
# Copyright: contributors to opsguard.anqicms
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The memory verdict and report of opsguard.anqicms.memory_facts.

:func:`gather` reads the machine (``/proc/meminfo``, the memory cgroup, PSI, OOM counters: :mod:`cgroups`), the
process table (:mod:`procfs`) grouped into services (:mod:`services`), and judges it against the thresholds. It
takes ``root`` (``/`` on a live host, a saved fixture tree in unit tests); nothing here raises on bad or absent
kernel files, only on bad options (ValueError).
"""

from __future__ import annotations

import os
import time

from ansible_collections.opsguard.anqicms.plugins.module_utils import procfs
from ansible_collections.opsguard.anqicms.plugins.module_utils.cgroups import (
    effective_limit, locate_hierarchy, mib, oom_section, path_under, percent_of, read_pressure, split_by_cgroup,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils.procfs import parse_keyed, read_text
from ansible_collections.opsguard.anqicms.plugins.module_utils.services import add_details, compile_matchers, compute_trend, group_services, top_processes

TYPE_CHECKING = False  # typing only for type checkers: a watcher run every few seconds pays for every import
if TYPE_CHECKING:  # pragma: no cover
    import typing as t

# Bounds of the options (checked before any work; see check_thresholds, check_options, services.compile_matchers).
SAMPLE_SECONDS_MAX = 3600
SAMPLES_MIN, SAMPLES_MAX = 3, 60
TOP_MAX = 10000
OOM_WINDOW_MAX = 10 * 365 * 86400
LEAK_MIB_PER_MINUTE_MAX = 1024 * 1024

DEFAULT_THRESHOLDS: dict[str, float] = {
    'available_warning': 25.0,
    'available_critical': 15.0,
    'service_limit_warning': 85.0,
    'service_limit_critical': 95.0,
    'psi_warning': 10.0,
    'psi_critical': 40.0,
    'swap_warning': 80.0,
    'swap_critical': 95.0,
    'leak_mib_per_minute': 4.0,
    'oom_window': 900.0,
}


# ---------------------------------------------------------------- system

def read_meminfo(root: str, notes: list[str]) -> dict[str, int]:
    return parse_keyed(read_text(path_under(root, 'proc/meminfo'), notes), scale_kb=True)


def system_memory(meminfo: dict[str, int]) -> dict[str, t.Any]:
    """The ``system`` section, with the formulas of ``free`` (``cached`` includes SReclaimable)."""
    total = meminfo.get('MemTotal', 0)
    free = meminfo.get('MemFree', 0)
    buffers = meminfo.get('Buffers', 0)
    cached = meminfo.get('Cached', 0) + meminfo.get('SReclaimable', 0)
    available = meminfo.get('MemAvailable')
    if available is None:
        available = free + buffers + cached
    available = min(available, total)
    swap_total = meminfo.get('SwapTotal', 0)
    swap_free = meminfo.get('SwapFree', 0)
    return {
        'total': total,
        'available': available,
        'used': max(total - available, 0),
        'free': free,
        'buffers': buffers,
        'cached': cached,
        'shared': meminfo.get('Shmem', 0),
        'swap_total': swap_total,
        'swap_used': max(swap_total - swap_free, 0),
        'swap_free': swap_free,
        'percent': percent_of(total - available, total) or 0.0,
    }


def read_vmstat(root: str, notes: list[str]) -> dict[str, int]:
    return parse_keyed(read_text(path_under(root, 'proc/vmstat'), notes))


# ---------------------------------------------------------------- verdict

def check_thresholds(th: dict[str, float]) -> list[str]:
    """Contradictions and out-of-range values, each as a sentence that names the fix."""
    errors = []
    for key in ('available_warning', 'available_critical', 'service_limit_warning', 'service_limit_critical',
                'psi_warning', 'psi_critical', 'swap_warning', 'swap_critical'):
        if not 0 <= th[key] <= 100:  # NaN fails this too
            errors.append('%s=%s is not a percentage between 0 and 100.' % (key, th[key]))
    if not 0 < th['leak_mib_per_minute'] <= LEAK_MIB_PER_MINUTE_MAX:
        errors.append('leak_mib_per_minute=%s must be above 0 and at most %d (MiB per minute).'
                      % (th['leak_mib_per_minute'], LEAK_MIB_PER_MINUTE_MAX))
    if not 0 <= th['oom_window'] <= OOM_WINDOW_MAX:
        errors.append('oom_window=%s must be between 0 and %d seconds (ten years).' % (th['oom_window'], OOM_WINDOW_MAX))
    if errors:
        return errors  # orderings of values that are themselves wrong would only repeat them
    if th['available_critical'] >= th['available_warning']:
        errors.append('available_critical=%s must be below available_warning=%s (critical means less memory left than warning).'
                      % (th['available_critical'], th['available_warning']))
    for low, high in (('service_limit_warning', 'service_limit_critical'), ('psi_warning', 'psi_critical'),
                      ('swap_warning', 'swap_critical')):
        if th[high] <= th[low]:
            errors.append('%s=%s must be above %s=%s.' % (high, th[high], low, th[low]))
    return errors


def check_options(sample_seconds: float, samples: int, top: int) -> list[str]:
    """Range errors of the sampling and listing options (NaN and infinities included), each naming the fix."""
    errors = []
    if not 0 <= sample_seconds <= SAMPLE_SECONDS_MAX:  # NaN fails this too
        errors.append('sample_seconds=%s must be between 0 and %d (seconds; 0 takes one snapshot).' % (sample_seconds, SAMPLE_SECONDS_MAX))
    if not SAMPLES_MIN <= samples <= SAMPLES_MAX:
        errors.append('samples=%s: use between %d (fewer cannot tell a trend) and %d.' % (samples, SAMPLES_MIN, SAMPLES_MAX))
    if not 0 <= top <= TOP_MAX:
        errors.append('top=%s must be between 0 and %d.' % (top, TOP_MAX))
    return errors


def relevant_kills(oom: dict[str, t.Any], limit: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    """Recent kernel OOM kills that concern this scope.

    The kernel log is machine-wide. When the limit is the machine's RAM, kills forced by a cgroup limit
    (CONSTRAINT_MEMCG) belong to that cgroup and are left out; when the limit is a cgroup, kills count only
    if that cgroup's own OOM counter is above zero, and then only the cgroup-constrained ones.
    """
    recent = oom.get('recent') or []
    if limit['source'] == 'meminfo':
        return [k for k in recent if k.get('constraint') != 'CONSTRAINT_MEMCG']
    if (oom.get('cgroup_oom_kills') or 0) > 0:
        return [k for k in recent if k.get('constraint') in ('CONSTRAINT_MEMCG', None)]
    return []


def _culprit(service: dict[str, t.Any] | None) -> dict[str, t.Any] | None:
    if service is None or service.get('in_limit') is False:
        return None  # a process not charged to the limit is never to blame for it
    return {k: service.get(k) for k in ('name', 'kind', 'exe', 'install_dir', 'unit', 'pids', 'rss_bytes', 'share_of_limit', 'cgroup')}


def verdict(facts: dict[str, t.Any], th: dict[str, float]) -> tuple[str, list[str], dict[str, t.Any] | None]:
    """``(verdict, reasons, culprit)`` from the gathered facts."""
    levels: list[str] = []
    reasons: list[str] = []
    blame: list[tuple[int, dict[str, t.Any]]] = []
    limit = facts['limit']
    services = [s for s in facts.get('services') or [] if s.get('in_limit') is not False]
    where = 'the machine\'s RAM' if limit['source'] == 'meminfo' else 'the %s limit of %s' % (limit['source'], limit['cgroup_path'])
    pct = limit['available_percent']
    largest = next((s for s in services), None)
    head = ''
    if largest:
        head = ' Largest: %s with %s (%.1f %%).' % (largest['name'], mib(largest['rss_bytes']), largest['share_of_limit'] or 0)
    if pct < th['available_critical'] or pct < th['available_warning']:
        level = 'critical' if pct < th['available_critical'] else 'warning'
        levels.append(level)
        reasons.append('Only %s (%.1f %%) of %s (%s) is available; %s below %s %%.%s' % (
            mib(limit['available_bytes']), pct, where, mib(limit['bytes']), level, th['available_%s' % level], head))
        if largest:
            blame.append((1, largest))
    for service in services:
        own = service.get('cgroup')
        if not own or own.get('share') is None:
            continue
        if own['share'] >= th['service_limit_warning']:
            level = 'critical' if own['share'] >= th['service_limit_critical'] else 'warning'
            levels.append(level)
            reasons.append('%s uses %s of its own %s limit (%.1f %%, cgroup %s); %s at %s %%.' % (
                service['name'], mib(own['working_set_bytes'] if own['working_set_bytes'] is not None else own['usage_bytes']),
                mib(own['limit_bytes']), own['share'], own['path'], level, th['service_limit_%s' % level]))
            blame.append((3 if level == 'critical' else 2, service))
    pressure = facts.get('pressure')
    if pressure and pressure.get('full') and (pressure.get('scope') == 'cgroup' or limit['source'] == 'meminfo'):
        full = pressure['full']['avg10']
        if full >= th['psi_warning']:
            level = 'critical' if full >= th['psi_critical'] else 'warning'
            levels.append(level)
            reasons.append('Memory pressure: all tasks stalled %.1f %% of the last 10 s (PSI full avg10, %s); %s at %s %%.' % (
                full, pressure.get('source'), level, th['psi_%s' % level]))
            if largest:
                blame.append((1, largest))
    system = facts['system']
    swap_total = limit.get('swap_max_bytes') if limit['source'] != 'meminfo' and limit.get('swap_max_bytes') else system['swap_total']
    swap_used = limit.get('swap_bytes') if limit['source'] != 'meminfo' and limit.get('swap_max_bytes') else system['swap_used']
    if swap_total and swap_used is not None:
        swap_pct = swap_used * 100.0 / swap_total
        if swap_pct >= th['swap_warning']:
            level = 'critical' if swap_pct >= th['swap_critical'] else 'warning'
            levels.append(level)
            reasons.append('Swap is %.1f %% used (%s of %s); %s at %s %%.' % (
                swap_pct, mib(swap_used), mib(swap_total), level, th['swap_%s' % level]))
    oom = facts.get('oom') or {}
    recent = relevant_kills(oom, limit)
    if recent:
        levels.append('warning')
        victims = ', '.join('%s (pid %d, %s)' % (k['victim'], k['pid'], k['time']) for k in recent[-3:])
        reasons.append('The kernel OOM-killed %d process(es) in the last %d s: %s.' % (len(recent), int(th['oom_window']), victims))
    trend = facts.get('trend')
    if trend and trend.get('leak_suspected'):
        by_name = {s['name']: s for s in services}
        for entry in trend['services']:
            if not entry['leak_suspected']:
                continue
            levels.append('warning')
            eta = '' if entry['minutes_to_limit'] is None else ' At this rate the limit is reached in %.1f min.' % entry['minutes_to_limit']
            reasons.append('%s grew %s/min over %s s (%d samples, RSS %s -> %s): leak suspected.%s' % (
                entry['name'], mib(entry['growth_bytes_per_minute']), trend['seconds'], trend['samples'],
                mib(entry['rss_bytes'][0]), mib(entry['rss_bytes'][-1]), eta))
            if entry['name'] in by_name:
                blame.append((2, by_name[entry['name']]))
    if 'critical' in levels:
        level = 'critical'
    elif levels:
        level = 'warning'
    else:
        level = 'ok'
        reasons.append('%s (%.1f %%) of %s (%s) is available; no threshold crossed.%s' % (
            mib(limit['available_bytes']), pct, where, mib(limit['bytes']), head))
        return level, reasons, None
    blame.sort(key=lambda item: (item[0], item[1]['rss_bytes']), reverse=True)
    culprit = blame[0][1] if blame else largest
    return level, reasons, _culprit(culprit)


# ---------------------------------------------------------------- all together

def counting_scope(limit: dict[str, t.Any], cgroup: dict[str, t.Any] | None, explicit: bool) -> str | None:
    """The cgroup whose subtree holds the processes that count, or ``None`` when every process does.

    With an explicit ``cgroup`` option: that cgroup. When the effective limit comes from a cgroup: the cgroup
    that sets it (every process charged to that limit is in its subtree). When the limit is the machine's RAM:
    every process counts.
    """
    if cgroup is None:
        return None
    if explicit:
        return cgroup['self_path']
    if limit['source'] != 'meminfo':
        return limit['cgroup_path'] or '/'
    return None


def gather(th: dict[str, float], root: str = '/', matchers: list[dict[str, t.Any]] | None = None,
           top: int = 10, detailed: bool = True, sample_seconds: float = 0, samples: int = 4, cgroup_path: str | None = None,
           kernel_messages: bool = True, sleep: t.Callable[[float], None] = time.sleep) -> dict[str, t.Any]:
    """Everything ``memory_facts`` returns (its ``opsguard_memory`` fact); raises ValueError only for bad options."""
    notes: list[str] = []
    compiled = matchers if matchers is not None else compile_matchers(None)
    meminfo = read_meminfo(root, notes)
    if not meminfo.get('MemTotal'):
        raise ValueError('%s has no MemTotal: this is not a Linux /proc this module can read.' % path_under(root, 'proc/meminfo'))
    system = system_memory(meminfo)
    hierarchy = locate_hierarchy(root, notes)
    limit, cgroup = effective_limit(root, system, notes, cgroup_path, hierarchy)
    pressure, pressure_note = read_pressure(root, cgroup)
    oom = oom_section(root, read_vmstat(root, notes), limit, notes, kernel_messages, th['oom_window'])
    trend = None
    history: list[tuple[float, dict[str, int]]] = []

    wants_cmdline = any(m.get('cmdline') for m in compiled)

    myself = os.getpid() if root == '/' else None
    scope = counting_scope(limit, cgroup, cgroup_path is not None)
    outside: list[dict[str, t.Any]] = []

    def scan() -> list[dict[str, t.Any]]:
        # The module's own process is left out: it is not a service, and it grows while it samples.
        found = [dict(row, uss=None, pss=None, swap=None)
                 for row in procfs.process_rows(path_under(root, 'proc'), cmdline=wants_cmdline, exclude=(myself,))]
        if scope is not None and hierarchy is not None:
            # Only processes charged to the limiting cgroup (its subtree) count toward it, are ranked or blamed.
            found, outside[:] = split_by_cgroup(found, hierarchy, scope)
        return found

    if sample_seconds > 0:
        interval = sample_seconds / max(samples - 1, 1)
        for _index in range(samples - 1):
            procs = scan()
            history.append((time.monotonic(), {s['name']: s['rss_bytes'] for s in group_services(procs, compiled, limit['bytes'])}))
            sleep(interval)
    procs = scan()
    if detailed:
        # USS/PSS/swap for the processes that matter: those of named services and the largest processes.
        keys = {p['pid'] for p in sorted(procs, key=lambda p: p['rss'], reverse=True)[:max(top, 1)]}
        matched = group_services(procs, compiled, limit['bytes'])
        keys.update(pid for s in matched if s['kind'] != 'other' for pid in s['pids'])
        add_details(root, procs, keys)
    services = group_services(procs, compiled, limit['bytes'], hierarchy, cgroup)
    names = {m['name'] for m in compiled}
    outside_services = [s for s in group_services(outside, compiled, None, in_limit=False)
                        if s['kind'] != 'other' or s['name'].split(':', 1)[0] in names]
    if outside_services:
        notes.append('%d service(s) run outside cgroup %s, whose processes are the ones judged, and are not counted toward '
                     'its limit: %s (listed in outside_limit, never blamed).'
                     % (len(outside_services), scope, ', '.join(s['name'] for s in outside_services[:5])
                        + (' ...' if len(outside_services) > 5 else '')))
    hidden = [s for s in services if s['kind'] == 'anqicms' and not s['exe']]
    if hidden:
        notes.append('The executable of %d AnQiCMS process(es) (pids %s) is not readable, so instances cannot be told apart '
                     'by install directory; run the module as root (become: true).'
                     % (sum(len(s['pids']) for s in hidden), ', '.join(str(p) for s in hidden for p in s['pids'])))
    if history:
        history.append((time.monotonic(), {s['name']: s['rss_bytes'] for s in services}))
        trend = compute_trend(history, {s['name']: s['kind'] for s in services}, th['leak_mib_per_minute'], limit['bytes'])
        growth = {e['name']: e for e in trend['services']}
        for service in services:
            entry = growth.get(service['name'])
            service['growth_bytes_per_minute'] = entry['growth_bytes_per_minute'] if entry else None
            service['leak_suspected'] = entry['leak_suspected'] if entry else False
    facts: dict[str, t.Any] = {
        'system': system, 'limit': limit, 'cgroup': cgroup, 'pressure': pressure, 'pressure_note': pressure_note,
        'oom': oom, 'services': services, 'top': top_processes(procs, services, top), 'trend': trend,
        'process_count': len(procs), 'thresholds': dict(th),
        'counted_cgroup': scope, 'outside_limit': outside_services,
    }
    level, reasons, culprit = verdict(facts, th)
    facts.update({'verdict': level, 'reasons': reasons, 'culprit': culprit, 'notes': notes})
    return facts
