# -*- coding: utf-8 -*-
# Copyright: contributors to opsguard.anqicms
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Memory cgroups (v1 and v2): the hierarchy, the effective limit, pressure (PSI) and OOM kills.

Every reader takes ``root`` (``/`` on a live host, a saved fixture tree in unit tests) and a ``notes`` list: a file
that is missing or unreadable adds a note and yields ``None``; nothing here raises on bad or absent kernel files.
Paths read from ``/proc/PID/cgroup`` and ``mountinfo`` are untrusted input: they never lead out of the mount.
"""

from __future__ import annotations

import errno
import math
import os
import re
import time

from ansible_collections.opsguard.anqicms.plugins.module_utils import procfs
from ansible_collections.opsguard.anqicms.plugins.module_utils.paths import resolve as resolve_path
from ansible_collections.opsguard.anqicms.plugins.module_utils.procfs import parse_keyed, read_text

TYPE_CHECKING = False  # typing only for type checkers: a watcher run every few seconds pays for every import
if TYPE_CHECKING:  # pragma: no cover
    import typing as t

MIB = 1024 * 1024
# cgroup v1 reports "no limit" as PAGE_COUNTER_MAX pages (0x7ffffffffffff000 on 4 KiB pages).
UNLIMITED = 1 << 62


# ---------------------------------------------------------------- numbers

def path_under(root: str, *parts: str) -> str:
    """``path_under('/saved', '/proc/meminfo')`` -> ``/saved/proc/meminfo``: a kernel path inside the tree read."""
    return os.path.join(root, *[p.lstrip('/') for p in parts])


def int_or_none(text: str | None) -> int | None:
    """A byte count from a cgroup file; ``None`` for ``max``, "unlimited", negative numbers and garbage."""
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
    path = path_under(root, 'proc/pressure/memory')
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


# ---------------------------------------------------------------- hierarchy and limits

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
    mounts = visible_mounts(_parse_mountinfo(read_text(path_under(root, 'proc/self/mountinfo'), notes)))
    v1 = [m for m in mounts if m['fstype'] == 'cgroup' and 'memory' in m['super'].split(',')]
    if v1:
        return {'version': 1, 'mount': path_under(root, v1[0]['mountpoint']), 'mount_root': v1[0]['root']}
    for mount in mounts:
        if mount['fstype'] != 'cgroup2':
            continue
        base = path_under(root, mount['mountpoint'])
        controllers = (read_text(os.path.join(base, 'cgroup.controllers'), quiet_missing=True) or '').split()
        if 'memory' in controllers or os.path.exists(os.path.join(base, 'memory.max')):
            return {'version': 2, 'mount': base, 'mount_root': mount['root']}
    if not mounts:
        # No mountinfo: fall back to the conventional locations.
        if os.path.exists(path_under(root, 'sys/fs/cgroup/memory/memory.limit_in_bytes')):
            return {'version': 1, 'mount': path_under(root, 'sys/fs/cgroup/memory'), 'mount_root': '/'}
        if 'memory' in (read_text(path_under(root, 'sys/fs/cgroup/cgroup.controllers'), quiet_missing=True) or '').split():
            return {'version': 2, 'mount': path_under(root, 'sys/fs/cgroup'), 'mount_root': '/'}
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


def read_max(hierarchy: dict[str, t.Any], rel: str) -> int | None:
    """The hard memory limit of one cgroup (v1 memory.limit_in_bytes, v2 memory.max); ``None`` when unlimited or unreadable."""
    name = 'memory.limit_in_bytes' if hierarchy['version'] == 1 else 'memory.max'
    return int_or_none(read_text(os.path.join(cgroup_dir(hierarchy, rel), name), quiet_missing=True))


def read_cgroup(hierarchy: dict[str, t.Any], rel: str, notes: list[str] | None = None) -> dict[str, t.Any] | None:
    """Limit, usage and OOM counters of one cgroup directory (v1 or v2); ``None`` if it does not exist."""
    base = cgroup_dir(hierarchy, rel)
    if not os.path.isdir(base):
        return None
    version = hierarchy['version']
    info: dict[str, t.Any] = {'path': rel or '/', 'version': version}
    if version == 1:
        stat = parse_keyed(read_text(os.path.join(base, 'memory.stat'), notes, quiet_missing=True))
        info['max_bytes'] = int_or_none(read_text(os.path.join(base, 'memory.limit_in_bytes'), notes, quiet_missing=True))
        info['high_bytes'] = None
        info['soft_limit_bytes'] = int_or_none(read_text(os.path.join(base, 'memory.soft_limit_in_bytes'), quiet_missing=True))
        info['hierarchical_limit_bytes'] = int_or_none(str(stat['hierarchical_memory_limit'])) if 'hierarchical_memory_limit' in stat else None
        info['usage_bytes'] = int_or_none(read_text(os.path.join(base, 'memory.usage_in_bytes'), notes, quiet_missing=True))
        inactive = stat.get('total_inactive_file', stat.get('inactive_file', 0))
        memsw_limit = int_or_none(read_text(os.path.join(base, 'memory.memsw.limit_in_bytes'), quiet_missing=True))
        memsw_usage = int_or_none(read_text(os.path.join(base, 'memory.memsw.usage_in_bytes'), quiet_missing=True))
        info['swap_max_bytes'] = max(memsw_limit - info['max_bytes'], 0) if memsw_limit is not None and info['max_bytes'] is not None else None
        info['swap_bytes'] = max(memsw_usage - info['usage_bytes'], 0) if memsw_usage is not None and info['usage_bytes'] is not None else None
        oom = parse_keyed(read_text(os.path.join(base, 'memory.oom_control'), quiet_missing=True))
        failcnt = int_or_none(read_text(os.path.join(base, 'memory.failcnt'), quiet_missing=True))
        info['events'] = {
            'oom_kill': oom.get('oom_kill'), 'under_oom': oom.get('under_oom'),
            'oom_kill_disable': oom.get('oom_kill_disable'), 'failcnt': failcnt,
        }
    else:
        stat = parse_keyed(read_text(os.path.join(base, 'memory.stat'), notes, quiet_missing=True))
        info['max_bytes'] = int_or_none(read_text(os.path.join(base, 'memory.max'), quiet_missing=True))
        info['high_bytes'] = int_or_none(read_text(os.path.join(base, 'memory.high'), quiet_missing=True))
        info['soft_limit_bytes'] = int_or_none(read_text(os.path.join(base, 'memory.low'), quiet_missing=True))
        info['hierarchical_limit_bytes'] = None
        info['usage_bytes'] = int_or_none(read_text(os.path.join(base, 'memory.current'), quiet_missing=True))
        inactive = stat.get('inactive_file', 0)
        info['swap_max_bytes'] = int_or_none(read_text(os.path.join(base, 'memory.swap.max'), quiet_missing=True))
        info['swap_bytes'] = int_or_none(read_text(os.path.join(base, 'memory.swap.current'), quiet_missing=True))
        events = parse_keyed(read_text(os.path.join(base, 'memory.events'), quiet_missing=True))
        info['events'] = {k: events.get(k) for k in ('low', 'high', 'max', 'oom', 'oom_kill', 'oom_group_kill')}
    usage = info['usage_bytes']
    if usage is not None:
        inactive = min(inactive, usage)
    info['inactive_file_bytes'] = inactive
    info['working_set_bytes'] = max(usage - inactive, 0) if usage is not None else None
    return info


def cgroup_ancestors(rel: str) -> list[str]:
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
        real_mount = resolve_path(hierarchy['mount'], 'the memory cgroup mount')
        real_dir = resolve_path(cgroup_dir(hierarchy, start), 'cgroup')
        if real_dir != real_mount and not real_dir.startswith(real_mount.rstrip('/') + '/'):
            raise ValueError('cgroup %s resolves to %s, outside the memory hierarchy %s; give a cgroup under it.'
                             % (start, real_dir, hierarchy['mount']))
        if not os.path.isdir(cgroup_dir(hierarchy, start)):
            raise ValueError('cgroup %s does not exist under %s (cgroup v%d); give a path relative to that mount, '
                             'for example /system.slice/anqicms.service.' % (start, hierarchy['mount'], hierarchy['version']))
    else:
        paths = procfs.parse_proc_cgroup(read_text(path_under(root, 'proc/self/cgroup'), notes))
        own = paths.get('memory' if hierarchy['version'] == 1 else 'unified')
        start = cgroup_under_mount(hierarchy, own) or '/'
        if own and cgroup_under_mount(hierarchy, own) is None:
            notes.append('cgroup %s of this process is outside the mounted hierarchy %s; using the mount root.' % (own, hierarchy['mount']))
        elif not os.path.isdir(cgroup_dir(hierarchy, start)):
            notes.append('cgroup %s of this process is not visible under %s; using the mount root.' % (start, hierarchy['mount']))
            start = '/'
    chain = []
    for rel in cgroup_ancestors(start):
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
        if _OOMKILL_PREFIX not in line and 'Killed process' not in line:
            continue  # both patterns below need one of these literals: skip the other records cheaply
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
    boot = procfs.boot_time(path_under(root, 'proc'), notes)
    text = read_kmsg(kmsg_path or path_under(root, 'dev/kmsg'), notes)
    kills = parse_kmsg(text, boot)
    now = time.time() if now is None else now
    section['messages'] = kills[-20:]
    section['recent'] = [k for k in kills if k['epoch'] is not None and now - k['epoch'] <= window]
    return section
