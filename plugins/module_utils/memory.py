# -*- coding: utf-8 -*-
# Copyright: contributors to opsguard.anqicms
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Memory readings and verdicts for opsguard.anqicms.memory_facts.

Every reader takes ``root`` (``/`` on a live host, a saved fixture tree in unit tests)
and a ``notes`` list: a file that is missing or unreadable adds a note and yields
``None``; nothing here raises on bad or absent kernel files.
"""

from __future__ import annotations

import errno
import fnmatch
import math
import os
import re
import time
import typing as t

MIB = 1024 * 1024
# cgroup v1 reports "no limit" as PAGE_COUNTER_MAX pages (0x7ffffffffffff000 on 4 KiB pages).
UNLIMITED = 1 << 62
# No kernel counter read here is above 2**64; a bigger number in a kernel file is garbage.
KERNEL_MAX = 1 << 64
LEAK_MIN_BYTES = 2 * MIB
# Bounds of the options (checked before any work; see check_thresholds, check_options, compile_matchers).
SAMPLE_SECONDS_MAX = 3600
SAMPLES_MIN, SAMPLES_MAX = 3, 60
TOP_MAX = 10000
OOM_WINDOW_MAX = 10 * 365 * 86400
LEAK_MIB_PER_MINUTE_MAX = 1024 * 1024
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


# ---------------------------------------------------------------- file helpers

def _path(root: str, *parts: str) -> str:
    return os.path.join(root, *[p.lstrip('/') for p in parts])


def read_text(path: str, notes: list[str] | None = None, quiet_missing: bool = False) -> str | None:
    """Return the text of ``path`` or ``None``; a failure other than absence adds a note."""
    try:
        with open(path, 'r', encoding='utf-8', errors='replace') as handle:
            return handle.read()
    except FileNotFoundError:
        if notes is not None and not quiet_missing:
            notes.append('%s does not exist.' % path)
    except OSError as exc:
        if notes is not None:
            reason = 'not supported by this kernel' if exc.errno == errno.EOPNOTSUPP else (exc.strerror or str(exc))
            notes.append('%s could not be read: %s.' % (path, reason))
    return None


def parse_keyed(text: str | None, scale_kb: bool = False) -> dict[str, int]:
    """Parse ``key value`` / ``Key: value kB`` lines into integers (bytes when ``scale_kb``)."""
    result: dict[str, int] = {}
    if not text:
        return result
    for line in text.splitlines():
        parts = line.replace(':', ' ', 1).split()
        if len(parts) < 2:
            continue
        try:
            value = int(parts[1])
        except ValueError:
            continue
        if not 0 <= value < KERNEL_MAX:
            continue  # sizes and counters are never negative; anything beyond u64 is garbage
        if scale_kb and len(parts) > 2 and parts[2].lower() == 'kb':
            value *= 1024
        result[parts[0]] = value
    return result


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if text == 'max':
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= UNLIMITED or value < 0 else value


def mib(value: float | int | None) -> str:
    if value is None:
        return 'unknown'
    try:
        return '%.0f MiB' % (value / MIB)
    except (OverflowError, ValueError):
        return 'unknown'


def percent_of(part: float | int | None, whole: float | int | None) -> float | None:
    """``part`` in percent of ``whole``, rounded to 0.1 and always within [0, 100]; ``None`` without a positive whole.

    A share of a limit above 100 % cannot be true (RSS counts shared pages once per process, kernel files
    can be garbage), so it is capped here, by construction, for every share this module reports.
    """
    if part is None or whole is None or not whole > 0 or (isinstance(part, float) and math.isnan(part)):
        return None
    if part >= whole:
        return 100.0
    if part <= 0:
        return 0.0
    try:
        value = float(part) * 100.0 / float(whole)
    except OverflowError:  # integers beyond a float: exact, rounded half up
        value = ((part * 2000 // whole + 1) // 2) / 10.0
    return round(min(max(value, 0.0), 100.0), 1) if math.isfinite(value) else None


# ---------------------------------------------------------------- system

def read_meminfo(root: str, notes: list[str]) -> dict[str, int]:
    return parse_keyed(read_text(_path(root, 'proc/meminfo'), notes), scale_kb=True)


def system_memory(meminfo: dict[str, int]) -> dict[str, t.Any]:
    """The ``system`` section, with the formulas of ``free`` and psutil."""
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
    return parse_keyed(read_text(_path(root, 'proc/vmstat'), notes))


def boot_time(root: str, notes: list[str]) -> float | None:
    stat = parse_keyed(read_text(_path(root, 'proc/stat'), notes))
    return float(stat['btime']) if 'btime' in stat else None


# ---------------------------------------------------------------- pressure

_PSI_NUM = r'(\d{1,3}(?:\.\d{1,6})?)'
_PSI_RE = re.compile(r'^(some|full)\s+avg10=%s\s+avg60=%s\s+avg300=%s\s+total=(\d{1,20})\s*$' % (_PSI_NUM, _PSI_NUM, _PSI_NUM))


def parse_pressure(text: str | None) -> dict[str, dict[str, float]] | None:
    if not text:
        return None
    result: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = _PSI_RE.match(line.strip())
        if match and all(float(match.group(i)) <= 100.0 for i in (2, 3, 4)):
            result[match.group(1)] = {
                'avg10': float(match.group(2)), 'avg60': float(match.group(3)),
                'avg300': float(match.group(4)), 'total_usec': int(match.group(5)),
            }
    return result or None


def read_pressure(root: str, cgroup: dict[str, t.Any] | None) -> tuple[dict[str, t.Any] | None, str]:
    """PSI of the limiting cgroup (v2) or of the whole kernel; ``(None, reason)`` when there is none."""
    reasons: list[str] = []
    if cgroup and cgroup.get('version') == 2 and cgroup.get('scope_dir'):
        path = os.path.join(cgroup['scope_dir'], 'memory.pressure')
        data = parse_pressure(read_text(path, reasons))
        if data:
            data['scope'] = 'cgroup'
            data['source'] = path
            return data, 'Pressure of cgroup %s.' % cgroup.get('scope_path', '/')
    path = _path(root, 'proc/pressure/memory')
    data = parse_pressure(read_text(path, reasons))
    if data:
        data['scope'] = 'host'
        data['source'] = '/proc/pressure/memory'
        if cgroup and cgroup.get('version') == 1 and cgroup.get('limited'):
            return data, ('Pressure is the whole kernel\'s: cgroup v1 has no per-cgroup PSI, so it is reported '
                          'but not used for the verdict of this cgroup-limited host.')
        return data, 'Pressure of the whole kernel (/proc/pressure/memory).'
    why = ' '.join(reasons) or 'no PSI file found.'
    return None, 'No memory pressure information: %s Boot with psi=1 (CONFIG_PSI) to get it.' % why


# ---------------------------------------------------------------- cgroups

def _parse_mountinfo(text: str | None) -> list[dict[str, str]]:
    mounts = []
    for line in (text or '').splitlines():
        left, sep, right = line.partition(' - ')
        if not sep:
            continue
        fields = left.split()
        rfields = right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        mounts.append({'root': fields[3], 'mountpoint': fields[4].replace('\\040', ' '),
                       'fstype': rfields[0], 'super': rfields[2]})
    return mounts


def parse_proc_cgroup(text: str | None) -> dict[str, str]:
    """Map ``memory``, ``systemd`` and ``unified`` to the paths of /proc/<pid>/cgroup."""
    result: dict[str, str] = {}
    for line in (text or '').splitlines():
        parts = line.split(':', 2)
        if len(parts) != 3:
            continue
        controllers = parts[1].split(',')
        if parts[0] == '0' and parts[1] == '':
            result['unified'] = parts[2]
        if 'memory' in controllers:
            result['memory'] = parts[2]
        if 'name=systemd' in controllers:
            result['systemd'] = parts[2]
    return result


def unit_of(paths: dict[str, str]) -> str | None:
    """The systemd unit (service or scope) a process belongs to, from its cgroup paths."""
    path = paths.get('systemd') or paths.get('unified') or ''
    for part in reversed(path.split('/')):
        if part.endswith('.service') or part.endswith('.scope'):
            return part
    return None


def visible_mounts(mounts: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    """The mounts one sees: where several are stacked on one mount point, only the last (topmost) one.

    A container that mounts its cgroup hierarchy afresh over an inherited one (root ``/../..``) lists both; the
    paths of ``/proc/PID/cgroup`` are relative to the fresh one, which hides the other.
    """
    top: dict[str, dict[str, t.Any]] = {}
    order: list[str] = []
    for mount in mounts:
        if mount['mountpoint'] not in top:
            order.append(mount['mountpoint'])
        top[mount['mountpoint']] = mount
    return [top[point] for point in order]


def locate_hierarchy(root: str, notes: list[str]) -> dict[str, t.Any] | None:
    """Find the hierarchy that carries the memory controller: v1 ``memory`` or v2 with ``memory`` enabled."""
    mounts = visible_mounts(_parse_mountinfo(read_text(_path(root, 'proc/self/mountinfo'), notes)))
    v1 = [m for m in mounts if m['fstype'] == 'cgroup' and 'memory' in m['super'].split(',')]
    if v1:
        return {'version': 1, 'mount': _path(root, v1[0]['mountpoint']), 'mount_root': v1[0]['root']}
    for mount in mounts:
        if mount['fstype'] != 'cgroup2':
            continue
        base = _path(root, mount['mountpoint'])
        controllers = (read_text(os.path.join(base, 'cgroup.controllers'), quiet_missing=True) or '').split()
        if 'memory' in controllers or os.path.exists(os.path.join(base, 'memory.max')):
            return {'version': 2, 'mount': base, 'mount_root': mount['root']}
    if not mounts:
        # No mountinfo: fall back to the conventional locations.
        if os.path.exists(_path(root, 'sys/fs/cgroup/memory/memory.limit_in_bytes')):
            return {'version': 1, 'mount': _path(root, 'sys/fs/cgroup/memory'), 'mount_root': '/'}
        if 'memory' in (read_text(_path(root, 'sys/fs/cgroup/cgroup.controllers'), quiet_missing=True) or '').split():
            return {'version': 2, 'mount': _path(root, 'sys/fs/cgroup'), 'mount_root': '/'}
    notes.append('No cgroup hierarchy with the memory controller is mounted; the limit is the machine\'s RAM.')
    return None


def relative_cgroup(hierarchy: dict[str, t.Any], path: str | None) -> str:
    """Turn a path of /proc/<pid>/cgroup into a path under the mounted hierarchy (``/`` when unknown or outside it)."""
    return cgroup_under_mount(hierarchy, path) or '/'


def cgroup_under_mount(hierarchy: dict[str, t.Any], path: str | None) -> str | None:
    """A path of /proc/<pid>/cgroup as a normalised path under the mounted hierarchy.

    ``None`` when it is unknown or lies outside what this mount shows: outside the mount's root (a bind-mounted
    subtree), or above the cgroup namespace's root (the kernel writes those as ``/../..``). The file is untrusted
    input: ``..`` never walks out of the mount.
    """
    if not path or not path.startswith('/') or '\0' in path:
        return None
    mount_root = hierarchy.get('mount_root') or '/'
    if mount_root != '/':
        if path != mount_root and not path.startswith(mount_root.rstrip('/') + '/'):
            return None
        path = path[len(mount_root.rstrip('/')):] or '/'
    parts = [p for p in path.split('/') if p not in ('', '.')]
    if '..' in parts:
        return None
    return '/' + '/'.join(parts)


def in_subtree(rel: str | None, scope: str) -> bool:
    """``rel`` is ``scope`` or below it (both normalised paths under the same mount)."""
    if rel is None:
        return False
    return scope == '/' or rel == scope or rel.startswith(scope.rstrip('/') + '/')


def check_cgroup_option(value: str | None) -> str | None:
    """An error sentence for a bad ``cgroup`` option, or ``None``: a path under the hierarchy, never out of it."""
    if value is None:
        return None
    if not value.strip():
        return 'cgroup=%r is empty; omit it to judge the cgroup this module runs in, or give a path such as /system.slice/anqicms.service.' % value
    if len(value) > 4096:
        return 'cgroup is %d characters long; a cgroup path is at most 4096.' % len(value)
    bad = [c for c in value if ord(c) < 32 or ord(c) == 127]
    if bad:
        return 'cgroup=%r contains control characters (%r); give a path such as /system.slice/anqicms.service.' % (value[:200], bad[0])
    if '..' in value.split('/'):
        return ('cgroup=%r contains "..": it must name a cgroup inside the memory hierarchy, relative to its mount, '
                'for example /system.slice/anqicms.service.' % value[:200])
    return None


def normalise_cgroup(value: str) -> str:
    """``system.slice//x/`` -> ``/system.slice/x``."""
    parts = [p for p in value.split('/') if p not in ('', '.')]
    return '/' + '/'.join(parts)


def cgroup_dir(hierarchy: dict[str, t.Any], rel: str) -> str:
    return os.path.join(hierarchy['mount'], rel.strip('/')) if rel.strip('/') else hierarchy['mount']


def read_cgroup(hierarchy: dict[str, t.Any], rel: str, notes: list[str] | None = None) -> dict[str, t.Any] | None:
    """Limit, usage and OOM counters of one cgroup directory (v1 or v2); ``None`` if it does not exist."""
    base = cgroup_dir(hierarchy, rel)
    if not os.path.isdir(base):
        return None
    version = hierarchy['version']
    info: dict[str, t.Any] = {'path': rel or '/', 'version': version}
    if version == 1:
        stat = parse_keyed(read_text(os.path.join(base, 'memory.stat'), notes, quiet_missing=True))
        info['max_bytes'] = _int_or_none(read_text(os.path.join(base, 'memory.limit_in_bytes'), notes, quiet_missing=True))
        info['high_bytes'] = None
        info['soft_limit_bytes'] = _int_or_none(read_text(os.path.join(base, 'memory.soft_limit_in_bytes'), quiet_missing=True))
        info['hierarchical_limit_bytes'] = _int_or_none(str(stat['hierarchical_memory_limit'])) if 'hierarchical_memory_limit' in stat else None
        info['usage_bytes'] = _int_or_none(read_text(os.path.join(base, 'memory.usage_in_bytes'), notes, quiet_missing=True))
        inactive = stat.get('total_inactive_file', stat.get('inactive_file', 0))
        memsw_limit = _int_or_none(read_text(os.path.join(base, 'memory.memsw.limit_in_bytes'), quiet_missing=True))
        memsw_usage = _int_or_none(read_text(os.path.join(base, 'memory.memsw.usage_in_bytes'), quiet_missing=True))
        info['swap_max_bytes'] = max(memsw_limit - info['max_bytes'], 0) if memsw_limit is not None and info['max_bytes'] is not None else None
        info['swap_bytes'] = max(memsw_usage - info['usage_bytes'], 0) if memsw_usage is not None and info['usage_bytes'] is not None else None
        oom = parse_keyed(read_text(os.path.join(base, 'memory.oom_control'), quiet_missing=True))
        failcnt = _int_or_none(read_text(os.path.join(base, 'memory.failcnt'), quiet_missing=True))
        info['events'] = {
            'oom_kill': oom.get('oom_kill'), 'under_oom': oom.get('under_oom'),
            'oom_kill_disable': oom.get('oom_kill_disable'), 'failcnt': failcnt,
        }
    else:
        stat = parse_keyed(read_text(os.path.join(base, 'memory.stat'), notes, quiet_missing=True))
        info['max_bytes'] = _int_or_none(read_text(os.path.join(base, 'memory.max'), quiet_missing=True))
        info['high_bytes'] = _int_or_none(read_text(os.path.join(base, 'memory.high'), quiet_missing=True))
        info['soft_limit_bytes'] = _int_or_none(read_text(os.path.join(base, 'memory.low'), quiet_missing=True))
        info['hierarchical_limit_bytes'] = None
        info['usage_bytes'] = _int_or_none(read_text(os.path.join(base, 'memory.current'), quiet_missing=True))
        inactive = stat.get('inactive_file', 0)
        info['swap_max_bytes'] = _int_or_none(read_text(os.path.join(base, 'memory.swap.max'), quiet_missing=True))
        info['swap_bytes'] = _int_or_none(read_text(os.path.join(base, 'memory.swap.current'), quiet_missing=True))
        events = parse_keyed(read_text(os.path.join(base, 'memory.events'), quiet_missing=True))
        info['events'] = {k: events.get(k) for k in ('low', 'high', 'max', 'oom', 'oom_kill', 'oom_group_kill')}
    usage = info['usage_bytes']
    if usage is not None:
        inactive = min(inactive, usage)
    info['inactive_file_bytes'] = inactive
    info['working_set_bytes'] = max(usage - inactive, 0) if usage is not None else None
    return info


def _ancestors(rel: str) -> list[str]:
    """``/a/b/c`` -> ``['/a/b/c', '/a/b', '/a', '/']``."""
    parts = [p for p in rel.split('/') if p]
    return ['/' + '/'.join(parts[:i]) if i else '/' for i in range(len(parts), -1, -1)]


def effective_limit(root: str, system: dict[str, t.Any], notes: list[str], cgroup_override: str | None = None,
                    hierarchy: dict[str, t.Any] | None = None) -> tuple[dict[str, t.Any], dict[str, t.Any] | None]:
    """Return ``(limit, cgroup)``: the tightest of MemTotal and the memory limits of this process's cgroup and its ancestors."""
    total = system['total']
    meminfo_limit = {
        'bytes': total, 'source': 'meminfo', 'cgroup_path': None, 'usage_bytes': system['used'],
        'working_set_bytes': system['used'], 'available_bytes': system['available'],
        'available_percent': percent_of(system['available'], total) or 0.0,
        'high_bytes': None, 'max_bytes': None, 'swap_bytes': None, 'swap_max_bytes': None, 'events': None,
    }
    if hierarchy is None:
        hierarchy = locate_hierarchy(root, notes)
    if hierarchy is None:
        return meminfo_limit, None
    if cgroup_override is not None:
        error = check_cgroup_option(cgroup_override)
        if error:
            raise ValueError(error)
        start = normalise_cgroup(cgroup_override)
        real_mount = os.path.realpath(hierarchy['mount'])
        real_dir = os.path.realpath(cgroup_dir(hierarchy, start))
        if real_dir != real_mount and not real_dir.startswith(real_mount.rstrip('/') + '/'):
            raise ValueError('cgroup %s resolves to %s, outside the memory hierarchy %s; give a cgroup under it.'
                             % (start, real_dir, hierarchy['mount']))
        if not os.path.isdir(cgroup_dir(hierarchy, start)):
            raise ValueError('cgroup %s does not exist under %s (cgroup v%d); give a path relative to that mount, '
                             'for example /system.slice/anqicms.service.' % (start, hierarchy['mount'], hierarchy['version']))
    else:
        paths = parse_proc_cgroup(read_text(_path(root, 'proc/self/cgroup'), notes))
        own = paths.get('memory' if hierarchy['version'] == 1 else 'unified')
        start = cgroup_under_mount(hierarchy, own) or '/'
        if own and cgroup_under_mount(hierarchy, own) is None:
            notes.append('cgroup %s of this process is outside the mounted hierarchy %s; using the mount root.' % (own, hierarchy['mount']))
        elif not os.path.isdir(cgroup_dir(hierarchy, start)):
            notes.append('cgroup %s of this process is not visible under %s; using the mount root.' % (start, hierarchy['mount']))
            start = '/'
    chain = []
    for rel in _ancestors(start):
        info = read_cgroup(hierarchy, rel, notes if rel == start else None)
        if info is not None:
            chain.append(info)
    best: dict[str, t.Any] | None = None
    for info in chain:
        if info['max_bytes'] is not None and (best is None or info['max_bytes'] < best['max_bytes']):
            best = info
    invisible = None
    if chain and chain[0].get('hierarchical_limit_bytes') is not None:
        hier = chain[0]['hierarchical_limit_bytes']
        if best is None or hier < best['max_bytes']:
            invisible = hier
    high = min((i['high_bytes'] for i in chain if i['high_bytes'] is not None), default=None)
    cgroup = {'version': hierarchy['version'], 'mount': hierarchy['mount'], 'mount_root': hierarchy['mount_root'],
              'self_path': start, 'limited': False, 'scope_path': '/', 'scope_dir': cgroup_dir(hierarchy, '/')}
    scope = best
    limit_bytes = best['max_bytes'] if best else None
    if invisible is not None:
        # v1 hierarchical_memory_limit: a tighter limit set on an ancestor outside this cgroup namespace.
        limit_bytes = invisible
        scope = chain[-1]
        notes.append('The tightest limit (%s) is set on a cgroup above this namespace; usage is that of %s.'
                     % (mib(invisible), scope['path']))
    if limit_bytes is None or limit_bytes >= total or scope is None:
        if chain:
            cgroup['scope_path'] = chain[-1]['path']
        meminfo_limit['high_bytes'] = high
        meminfo_limit['events'] = chain[-1]['events'] if chain else None
        return meminfo_limit, cgroup
    cgroup.update({'limited': True, 'scope_path': scope['path'], 'scope_dir': cgroup_dir(hierarchy, scope['path'])})
    working = scope['working_set_bytes'] if scope['working_set_bytes'] is not None else 0
    available = min(max(min(limit_bytes - working, system['available']), 0), limit_bytes)
    limit = {
        'bytes': limit_bytes, 'source': 'cgroup v%d' % hierarchy['version'], 'cgroup_path': scope['path'],
        'usage_bytes': scope['usage_bytes'], 'working_set_bytes': working, 'available_bytes': available,
        'available_percent': percent_of(available, limit_bytes) or 0.0,
        'high_bytes': high, 'max_bytes': limit_bytes, 'swap_bytes': scope['swap_bytes'],
        'swap_max_bytes': scope['swap_max_bytes'], 'events': scope['events'],
        'inactive_file_bytes': scope['inactive_file_bytes'],
    }
    if hierarchy['version'] == 1 and scope.get('soft_limit_bytes') is not None:
        limit['soft_limit_bytes'] = scope['soft_limit_bytes']
    return limit, cgroup


# ---------------------------------------------------------------- OOM

_KILLED_RE = re.compile(r'(?P<memcg>Memory cgroup out of memory: )?Killed process (?P<pid>[0-9]{1,10}) \((?P<name>[^)]{0,256})\)'
                        r'(?:.*?anon-rss:(?P<anon>[0-9]{1,19})kB)?(?:.*?file-rss:(?P<file>[0-9]{1,19})kB)?')
_PID_RE = re.compile(r'[0-9]{1,10}')
_DMESG_RE = re.compile(r'^\[\s*([0-9]{1,12}\.[0-9]{1,9})\]\s*(.*)$')


def _utc(epoch: float | None) -> str | None:
    """ISO time of an epoch read from the kernel log, or ``None`` when it is not a representable time."""
    if epoch is None:
        return None
    try:
        return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(epoch))
    except (OverflowError, ValueError, OSError):
        return None


_OOMKILL_PREFIX = 'oom-kill:'


def parse_kmsg(text: str, boot: float | None) -> list[dict[str, t.Any]]:
    """OOM kills from /dev/kmsg records (``prio,seq,usec,flags;message``) or ``dmesg`` lines."""
    kills: list[dict[str, t.Any]] = []
    constraints: dict[int, dict[str, str | None]] = {}
    for line in text.splitlines():
        usec = None
        head, sep, message = line.partition(';')
        fields = head.split(',')
        if sep and len(fields) >= 3 and _PID_RE.fullmatch(fields[0]):
            usec = int(fields[2]) if re.fullmatch(r'[0-9]{1,19}', fields[2]) else None
        else:
            message = line
            match = _DMESG_RE.match(line)
            if match:
                usec = int(float(match.group(1)) * 1e6)
                message = match.group(2)
        at = message.find(_OOMKILL_PREFIX)
        if at >= 0:
            pairs = dict(item.split('=', 1) for item in message[at + len(_OOMKILL_PREFIX):].strip().split(',') if '=' in item)
            if _PID_RE.fullmatch(pairs.get('pid', '')):
                constraints[int(pairs['pid'])] = {'constraint': pairs.get('constraint'),
                                                  'memcg': pairs.get('oom_memcg') or pairs.get('task_memcg')}
            continue
        found = _KILLED_RE.search(message)
        if not found:
            continue
        pid = int(found.group('pid'))
        extra = constraints.pop(pid, {})
        anon = int(found.group('anon')) * 1024 if found.group('anon') else None
        when = boot + usec / 1e6 if boot is not None and usec is not None else None
        stamp = _utc(when)
        if stamp is None:
            when = None  # not a time this machine can represent: garbage in the log
        kills.append({
            'pid': pid, 'victim': found.group('name'), 'anon_rss_bytes': anon,
            'seconds_since_boot': round(usec / 1e6, 3) if usec is not None else None,
            'time': stamp,
            'epoch': when,
            'constraint': extra.get('constraint') or ('CONSTRAINT_MEMCG' if found.group('memcg') else None),
            'memcg': extra.get('memcg'),
        })
    return kills


def read_kmsg(path: str, notes: list[str], max_records: int = 50000) -> str:
    """Read the kernel log ring without blocking; a regular file (fixture) is read whole."""
    chunks: list[str] = []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        notes.append('Kernel messages (%s) are not readable: %s; OOM victims are not listed.' % (path, exc.strerror or exc))
        return ''
    try:
        for _dummy in range(max_records):
            try:
                data = os.read(fd, 16384)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # record overwritten while reading: continue with the next
                    continue
                notes.append('Reading %s stopped: %s.' % (path, exc.strerror or exc))
                break
            if not data:
                break
            chunks.append(data.decode('utf-8', 'replace'))
    finally:
        os.close(fd)
    return ''.join(chunks)


def oom_section(root: str, vmstat: dict[str, int], limit: dict[str, t.Any], notes: list[str], kernel_messages: bool = True,
                window: float = 900.0, now: float | None = None, kmsg_path: str | None = None) -> dict[str, t.Any]:
    events = limit.get('events') or {}
    host_kills = vmstat.get('oom_kill')
    section: dict[str, t.Any] = {
        'host_oom_kills': host_kills,
        'cgroup_oom_kills': events.get('oom_kill'),
        'cgroup_events': events or None,
        'recent': [],
        'recent_window_seconds': window,
        'messages': [],
    }
    if not kernel_messages:
        return section
    if host_kills == 0:
        return section  # no kill since boot: nothing to look for in the kernel log
    boot = boot_time(root, notes)
    text = read_kmsg(kmsg_path or _path(root, 'dev/kmsg'), notes)
    kills = parse_kmsg(text, boot)
    now = time.time() if now is None else now
    section['messages'] = kills[-20:]
    section['recent'] = [k for k in kills if k['epoch'] is not None and now - k['epoch'] <= window]
    return section


# ---------------------------------------------------------------- processes

def read_smaps_rollup(root: str, pid: int) -> dict[str, int] | None:
    text = read_text(_path(root, 'proc/%d/smaps_rollup' % pid), quiet_missing=True)
    if not text:
        return None
    data = parse_keyed(text, scale_kb=True)
    return {
        'uss': data.get('Private_Clean', 0) + data.get('Private_Dirty', 0) + data.get('Private_Hugetlb', 0),
        'pss': data.get('Pss', 0),
        'swap': data.get('Swap', 0),
    }


def scan_processes(psutil_mod: t.Any, root: str = '/', detailed: bool = True, cmdline: bool = True) -> list[dict[str, t.Any]]:
    """One record per user-space process: psutil for the process table, /proc for the cgroup.

    ``detailed`` reads /proc/PID/smaps_rollup for every process; :func:`add_details` does it for a chosen few.
    """
    procs = []
    attrs = ['pid', 'ppid', 'name', 'exe', 'memory_info'] + (['cmdline'] if cmdline else [])
    for proc in psutil_mod.process_iter(attrs, ad_value=None):
        info = proc.info
        mem = info.get('memory_info')
        rss = mem.rss if mem is not None else 0
        exe = info.get('exe') or ''
        if not exe and not rss:
            continue  # kernel thread or vanished
        if exe.endswith(' (deleted)'):
            exe = exe[:-len(' (deleted)')]
        pid = info['pid']
        record: dict[str, t.Any] = {
            'pid': pid, 'ppid': info.get('ppid'), 'name': info.get('name') or '', 'exe': exe,
            'cmdline': ' '.join(info.get('cmdline') or []), 'rss': rss,
            'cgroups': parse_proc_cgroup(read_text(_path(root, 'proc/%d/cgroup' % pid), quiet_missing=True)),
            'uss': None, 'pss': None, 'swap': None,
        }
        if detailed:
            smaps = read_smaps_rollup(root, pid)
            if smaps:
                record.update(smaps)
        procs.append(record)
    return procs


def add_details(root: str, procs: list[dict[str, t.Any]], pids: set[int]) -> None:
    """USS, PSS and swap from smaps_rollup for the given PIDs (reading it costs a page-table walk per process)."""
    for proc in procs:
        if proc['pid'] in pids and proc.get('pss') is None:
            smaps = read_smaps_rollup(root, proc['pid'])
            if smaps:
                proc.update(smaps)


def in_cgroup(procs: list[dict[str, t.Any]], hierarchy: dict[str, t.Any], path: str) -> list[dict[str, t.Any]]:
    """The processes whose memory cgroup is ``path`` or below it."""
    return split_by_cgroup(procs, hierarchy, path)[0]


def split_by_cgroup(procs: list[dict[str, t.Any]], hierarchy: dict[str, t.Any],
                    path: str) -> tuple[list[dict[str, t.Any]], list[dict[str, t.Any]]]:
    """``(inside, outside)``: processes whose memory cgroup is ``path`` or below it, and all others.

    A process whose cgroup is unknown, outside the mount or above the cgroup namespace is outside: it cannot
    be shown to be charged to ``path``.
    """
    key = 'memory' if hierarchy['version'] == 1 else 'unified'
    inside, outside = [], []
    for proc in procs:
        rel = cgroup_under_mount(hierarchy, (proc.get('cgroups') or {}).get(key))
        (inside if in_subtree(rel, path) else outside).append(proc)
    return inside, outside


def _glob_re(patterns: list[str] | None) -> t.Pattern[str] | None:
    """One compiled expression for a list of shell-style patterns."""
    if not patterns:
        return None
    return re.compile('|'.join('(?:%s)' % fnmatch.translate(p) for p in patterns))


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


def match_process(proc: dict[str, t.Any], matchers: list[dict[str, t.Any]]) -> dict[str, t.Any] | None:
    """The first matcher any criterion of which matches the process."""
    unit = unit_of(proc.get('cgroups') or {}) or ''
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
    for proc in procs:
        if '_matcher' not in proc:
            proc['_matcher'] = match_process(proc, matchers)
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
            unit = unit_of(proc.get('cgroups') or {})
            label = unit if unit and unit.endswith('.service') else (proc['name'] or 'pid %d' % proc['pid'])
            key = ('other', label)
            meta.setdefault(key, {'matcher': {'name': label, 'kind': 'other', 'per_executable': False}, 'exe': proc['exe']})
        groups.setdefault(key, []).append(proc)
    cg_cache: dict[str, dict[str, t.Any] | None] = {}
    services = []
    for key, members in groups.items():
        matcher = meta[key]['matcher']
        exe = meta[key]['exe']
        units = [unit_of(p.get('cgroups') or {}) for p in members]
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
    paths = [cgroup_under_mount(hierarchy, (p.get('cgroups') or {}).get(key_name)) for p in members]
    paths = [p for p in paths if p and p != '/']
    if not paths:
        return None
    start = max(set(paths), key=paths.count)
    stop = set(_ancestors((cgroup or {}).get('scope_path') or '/'))
    best = None
    for rel in _ancestors(start):
        if rel in stop:
            break
        if rel not in cache:
            cache[rel] = read_cgroup(hierarchy, rel)
        info = cache[rel]
        if info is None or info['max_bytes'] is None:
            continue
        if best is None or info['max_bytes'] < best['max_bytes']:
            best = info
    if best is None:
        return None
    used = best['working_set_bytes'] if best['working_set_bytes'] is not None else best['usage_bytes']
    return {
        'path': best['path'], 'limit_bytes': best['max_bytes'], 'high_bytes': best['high_bytes'],
        'usage_bytes': best['usage_bytes'], 'working_set_bytes': best['working_set_bytes'],
        'share': percent_of(used, best['max_bytes']),
        'oom_kills': (best.get('events') or {}).get('oom_kill'),
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


def gather(psutil_mod: t.Any, th: dict[str, float], root: str = '/', matchers: list[dict[str, t.Any]] | None = None,
           top: int = 10, detailed: bool = True, sample_seconds: float = 0, samples: int = 4, cgroup_path: str | None = None,
           kernel_messages: bool = True, sleep: t.Callable[[float], None] = time.sleep) -> dict[str, t.Any]:
    """Everything ``memory_facts`` returns; raises ValueError only for bad options."""
    notes: list[str] = []
    compiled = matchers if matchers is not None else compile_matchers(None)
    meminfo = read_meminfo(root, notes)
    if not meminfo.get('MemTotal'):
        raise ValueError('%s has no MemTotal: this is not a Linux /proc this module can read.' % _path(root, 'proc/meminfo'))
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
        found = [p for p in scan_processes(psutil_mod, root, detailed=False, cmdline=wants_cmdline) if p['pid'] != myself]
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
