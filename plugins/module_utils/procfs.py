# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The process table, read straight from /proc: the one reader every module of this collection uses.

Every function takes ``proc`` (``/proc`` on a live host, ``<root>/proc`` of a saved tree in unit tests) and reads
the kernel's files directly, without a subprocess per process and without third-party libraries, so that it stays
cheap on a host that is short of memory.

What lives here: the PID list, readers of ``/proc/PID/{stat,status,statm,cmdline,exe,cgroup,smaps_rollup}``, the
boot time, ``key value`` file parsing, ``(deleted)`` stripping, the systemd unit of a cgroup path, process
identities (PID, start time in clock ticks since boot, resolved executable) and process trees.
"""

from __future__ import annotations

import errno
import os

PROC = '/proc'
CLK_TCK = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100
PAGE_SIZE = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 4096
DELETED_SUFFIX = ' (deleted)'
# No kernel counter read here is above 2**64; a bigger number in a kernel file is garbage.
KERNEL_MAX = 1 << 64
# The kernel truncates comm to 15 characters (TASK_COMM_LEN - 1).
COMM_MAX = 15


class ProcessError(Exception):
    """A refusal or failure with an operator-facing message."""


# ---------------------------------------------------------------- files


def read(path: str) -> str:
    """The whole file as text (undecodable bytes kept as surrogates); OSError when it cannot be read."""
    with open(path, 'rb') as f:
        return f.read().decode('utf-8', 'surrogateescape')


def read_text(path: str, notes: list | None = None, quiet_missing: bool = False) -> str | None:
    """The text of ``path`` or ``None``; a failure other than absence (and absence unless quiet) adds a note."""
    try:
        return _read_raw(path, 'replace')
    except FileNotFoundError:
        if notes is not None and not quiet_missing:
            notes.append('%s does not exist.' % path)
    except OSError as exc:
        if notes is not None:
            reason = 'not supported by this kernel' if exc.errno == errno.EOPNOTSUPP else (exc.strerror or str(exc))
            notes.append('%s could not be read: %s.' % (path, reason))
    return None


def parse_keyed(text: str | None, scale_kb: bool = False) -> dict:
    """Parse ``key value`` / ``Key: value kB`` lines into integers (bytes when ``scale_kb``); garbage lines are skipped."""
    result: dict = {}
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


def read_fields(path: str) -> dict:
    """``Key: value`` lines of a file as strings (``/proc/PID/status``, ``smaps_rollup``); empty when unreadable."""
    result = {}
    try:
        for line in read(path).splitlines():
            if ':' in line:
                key, value = line.split(':', 1)
                result[key.strip()] = value.strip()
    except (IOError, OSError):
        pass
    return result


def strip_deleted(exe: str) -> str:
    """``/opt/a/anqicms (deleted)`` -> ``/opt/a/anqicms``: the path a replaced or removed executable was started from."""
    if exe.endswith(DELETED_SUFFIX):
        return exe[:-len(DELETED_SUFFIX)]
    return exe


# ---------------------------------------------------------------- the table


def pids(proc: str = PROC) -> list:
    """Every PID in ``proc``, ascending (a snapshot: any of them may be gone by the time it is read)."""
    try:
        entries = os.listdir(proc)
    except (IOError, OSError) as e:
        raise ProcessError('cannot list %s: %s' % (proc, e))
    return sorted(int(entry) for entry in entries if entry.isdigit())


def boot_time(proc: str = PROC, notes: list | None = None) -> float | None:
    """The ``btime`` line of ``proc/stat`` (seconds since the epoch), or ``None`` when it cannot be read (see read_text)."""
    text = read_text(os.path.join(proc, 'stat'), notes)
    stat = parse_keyed(text)
    return float(stat['btime']) if 'btime' in stat else None


def parse_stat(text: str) -> dict:
    """Parse /proc/PID/stat.  The comm field may hold spaces and parentheses: it ends at the last ')'."""
    open_paren = text.find('(')
    close_paren = text.rfind(')')
    if open_paren < 0 or close_paren < open_paren:
        raise ValueError('not a /proc/PID/stat line: %r' % text[:80])
    rest = text[close_paren + 2:].split()
    if len(rest) < 20:
        raise ValueError('truncated /proc/PID/stat line: %r' % text[:80])
    return {
        'pid': int(text[:open_paren]),
        'comm': text[open_paren + 1:close_paren],
        'state': rest[0],
        'ppid': int(rest[1]),
        'pgrp': int(rest[2]),
        'num_threads': int(rest[17]),
        'start_ticks': int(rest[19]),
        'rss_pages': int(rest[21]) if len(rest) > 21 else 0,
        'flags': int(rest[6]),
    }


def read_stat(pid: int, proc: str = PROC) -> dict | None:
    """Parsed /proc/PID/stat, or ``None`` when the process is gone or the file is garbage."""
    try:
        return parse_stat(read(os.path.join(proc, str(pid), 'stat')))
    except (IOError, OSError, ValueError):
        return None


def read_exe(pid: int, proc: str = PROC) -> str:
    """The resolved executable of pid with `` (deleted)`` kept; ``''`` for a kernel thread or when it cannot be read."""
    try:
        return os.readlink(os.path.join(proc, str(pid), 'exe'))
    except (IOError, OSError):
        return ''


def read_cmdline(pid: int, proc: str = PROC) -> list:
    """The arguments of pid (``[]`` for a kernel thread, a zombie or a process that is gone)."""
    try:
        raw = read(os.path.join(proc, str(pid), 'cmdline'))
    except (IOError, OSError):
        return []
    if not raw:
        return []
    parts = raw.split('\0')
    if parts[-1] == '':
        parts.pop()
    return parts


def rss_bytes(pid: int, proc: str = PROC) -> int:
    """Resident memory of pid (``/proc/PID/statm``); 0 when it cannot be read."""
    try:
        return int(read(os.path.join(proc, str(pid), 'statm')).split()[1]) * PAGE_SIZE
    except (IOError, OSError, IndexError, ValueError):
        return 0


def read_smaps_rollup(pid: int, proc: str = PROC) -> dict | None:
    """USS, PSS and swap of pid in bytes from ``/proc/PID/smaps_rollup`` (a page-table walk), or ``None``."""
    text = read_text(os.path.join(proc, str(pid), 'smaps_rollup'), quiet_missing=True)
    if not text:
        return None
    data = parse_keyed(text, scale_kb=True)
    return {
        'uss': data.get('Private_Clean', 0) + data.get('Private_Dirty', 0) + data.get('Private_Hugetlb', 0),
        'pss': data.get('Pss', 0),
        'swap': data.get('Swap', 0),
    }


def display_name(comm: str, cmdline: list) -> str:
    """The process name: comm, or the basename of argv[0] when comm is truncated and argv[0] extends it."""
    if len(comm) >= COMM_MAX and cmdline:
        first = cmdline[0]
        if len(cmdline) == 1 and ' ' in first:
            first = first.split(' ')[0]  # a process that rewrote its title into one argument
        extended = os.path.basename(first)
        if extended.startswith(comm):
            return extended
    return comm


# ---------------------------------------------------------------- cgroups of a process


def parse_proc_cgroup(text: str | None) -> dict:
    """Map ``memory``, ``systemd`` and ``unified`` to the paths of /proc/<pid>/cgroup."""
    result: dict = {}
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


def read_cgroups(pid: int, proc: str = PROC) -> dict:
    """parse_proc_cgroup of ``/proc/PID/cgroup`` (empty when it cannot be read)."""
    return parse_proc_cgroup(read_text(os.path.join(proc, str(pid), 'cgroup'), quiet_missing=True))


def unit_of(paths: dict, suffixes: tuple = ('.service', '.scope')) -> str | None:
    """The systemd unit a process belongs to, from its cgroup paths (the innermost component with one of suffixes)."""
    path = paths.get('systemd') or paths.get('unified') or ''
    for part in reversed(path.split('/')):
        if part.endswith(suffixes):
            return part
    return None


def systemd_unit_of(pid: int, proc: str = PROC) -> str | None:
    """The systemd service whose cgroup holds pid, if any."""
    return unit_of(read_cgroups(pid, proc), ('.service',))


# ---------------------------------------------------------------- rows for memory accounting


# PF_KTHREAD in the flags field of /proc/PID/stat: a kernel thread (no memory, no executable).
PF_KTHREAD = 0x00200000


def _read_raw(path: str, errors: str = 'surrogateescape') -> str:
    """The whole kernel file as text with bare open, read and close calls (no buffered file object).

    Reads until end of file: a /proc file made of records (mountinfo, cgroup) can return less than asked although
    more follows, so a short read does not mean the end.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            more = os.read(fd, 65536)
            if not more:
                break
            chunks.append(more)
    finally:
        os.close(fd)
    return b''.join(chunks).decode('utf-8', errors)


# Per-process files that hold one record (stat, statm, cgroup). The kernel makes each of them whole with one
# show call (proc_single_show) and copies it out in one read when the buffer is larger, so a read that returns less
# than asked is the whole file. A read that fills the buffer goes on to end of file like _read_raw.
SINGLE_RECORD_BUFFER = 65536


def _read_single_record(path: str) -> str:
    """A one-record /proc/PID file as text with one open, one read and one close (two reads if it is that big)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, SINGLE_RECORD_BUFFER)
        if len(data) == SINGLE_RECORD_BUFFER:
            chunks = [data]
            while True:
                more = os.read(fd, SINGLE_RECORD_BUFFER)
                if not more:
                    break
                chunks.append(more)
            data = b''.join(chunks)
    finally:
        os.close(fd)
    return data.decode('utf-8', 'surrogateescape')


def process_rows(proc: str = PROC, cmdline: bool = True, exclude: tuple = ()) -> list:
    """One row per user-space process: pid, ppid, name, exe (`` (deleted)`` stripped), cmdline (joined), rss, cgroups.

    Kernel threads, zombies and processes that vanish while being read are left out; an executable that cannot be
    read (another user's process, without root) is ``''``. ``cmdline=False`` skips reading the arguments except for
    names truncated by the kernel.

    This runs every few seconds on hosts with thousands of processes, so it reads as little as it can per process:
    ``stat`` (name, parent, state; kernel threads are recognised by its flags and skipped before any other read),
    ``statm``, the ``exe`` link and ``cgroup`` (parsed once per distinct text: most processes share a few cgroups),
    each with a bare open, a single read and a close (_read_single_record).
    """
    rows = []
    parsed_cgroups: dict = {}
    prefix = proc.rstrip('/') + '/'
    for pid in pids(proc):
        if pid in exclude:
            continue
        base = '%s%d/' % (prefix, pid)
        try:
            stat = parse_stat(_read_single_record(base + 'stat'))
        except (IOError, OSError, ValueError):
            continue
        if stat['state'] in ('Z', 'X', 'x') or stat['flags'] & PF_KTHREAD:
            continue
        try:
            exe = strip_deleted(os.readlink(base + 'exe'))
        except (IOError, OSError):
            exe = ''
        try:  # statm, not stat: recent kernels give stat's RSS from per-CPU counters (off by a few pages)
            rss = int(_read_single_record(base + 'statm').split()[1]) * PAGE_SIZE
        except (IOError, OSError, IndexError, ValueError):
            rss = 0
        if not exe and not rss:
            continue  # kernel thread or vanished
        args = read_cmdline(pid, proc) if cmdline or len(stat['comm']) >= COMM_MAX else []
        try:
            text = _read_single_record(base + 'cgroup')
        except (IOError, OSError):
            text = ''
        paths = parsed_cgroups.get(text)
        if paths is None:
            paths = parsed_cgroups[text] = parse_proc_cgroup(text)
        rows.append({
            'pid': pid, 'ppid': stat['ppid'], 'name': display_name(stat['comm'], args), 'exe': exe,
            'cmdline': ' '.join(args) if cmdline else '', 'rss': rss, 'cgroups': dict(paths),
        })
    return rows


def pids_by_exe(exe: str, proc: str = PROC) -> list:
    """PIDs whose resolved /proc/PID/exe (`` (deleted)`` stripped) is exe (readlink only: no other file is read)."""
    found = []
    for pid in pids(proc):
        try:
            if strip_deleted(os.readlink(os.path.join(proc, str(pid), 'exe'))) == exe:
                found.append(pid)
        except (IOError, OSError):
            continue
    return found


# ---------------------------------------------------------------- identities


class Identity(object):
    """What proves that a PID still denotes the same process: PID, start ticks and executable."""

    __slots__ = ('pid', 'ppid', 'start_ticks', 'exe', 'name', 'state', 'tgid')

    def __init__(self, pid: int, ppid: int, start_ticks: int, exe: str, name: str, state: str, tgid: int | None = None) -> None:
        self.pid = pid
        self.ppid = ppid
        self.start_ticks = start_ticks
        self.exe = exe
        self.name = name
        self.state = state
        self.tgid = tgid if tgid is not None else pid

    @property
    def key(self) -> tuple:
        return (self.pid, self.start_ticks, strip_deleted(self.exe))

    def same(self, other: Identity | None) -> bool:
        return other is not None and self.key == other.key

    def start_epoch(self, proc: str = PROC) -> float:
        boot = boot_time(proc)
        if boot is None:
            raise ProcessError('%s/stat has no btime line' % proc)
        return boot + float(self.start_ticks) / CLK_TCK

    def as_dict(self, proc: str = PROC) -> dict:
        return {
            'pid': self.pid,
            'ppid': self.ppid,
            'start_ticks': self.start_ticks,
            'start_time': round(self.start_epoch(proc), 2),
            'exe': strip_deleted(self.exe),
            'exe_deleted': self.exe.endswith(DELETED_SUFFIX),
            'name': self.name,
        }

    def __repr__(self) -> str:
        return 'Identity(pid=%d, start_ticks=%d, exe=%r, name=%r)' % (self.pid, self.start_ticks, self.exe, self.name)


def read_identity(pid: int, proc: str = PROC, need_tgid: bool = False) -> Identity | None:
    """Identity of PID, or None when no such process exists (or it is a zombie)."""
    base = os.path.join(proc, str(pid))
    try:
        stat = parse_stat(read(base + '/stat'))
    except (IOError, OSError) as e:
        if e.errno in (errno.ENOENT, errno.ESRCH):
            return None
        raise ProcessError('cannot read %s/stat: %s' % (base, e))
    if stat['state'] in ('Z', 'X', 'x'):
        return None
    try:
        exe = os.readlink(base + '/exe')
    except (IOError, OSError) as e:
        if e.errno in (errno.ENOENT, errno.ESRCH):
            # A kernel thread (no exe) or a process that exited between the two reads.
            if not os.path.exists(base):
                return None
            exe = ''
        else:
            raise ProcessError('cannot read %s/exe: %s (run as root or as the process owner)' % (base, e))
    tgid = None
    if need_tgid:
        try:
            for line in read(base + '/status').splitlines():
                if line.startswith('Tgid:'):
                    tgid = int(line.split()[1])
                    break
        except (IOError, OSError):
            return None
    return Identity(pid, stat['ppid'], stat['start_ticks'], exe, stat['comm'], stat['state'], tgid)


def _identities(pid_list, proc: str) -> dict:
    """Map PID -> Identity for the given PIDs that are still alive."""
    table = {}
    for pid in pid_list:
        try:
            ident = read_identity(pid, proc)
        except ProcessError:
            continue
        if ident is not None:
            table[ident.pid] = ident
    return table


def scan_processes(proc: str = PROC) -> dict:
    """Map PID -> Identity for every live process (one pass over /proc)."""
    return _identities(pids(proc), proc)


def scan_by_exe(exe: str, proc: str = PROC) -> dict:
    """Map PID -> Identity of the processes whose resolved executable is exe (readlink first, stat only on a match)."""
    return _identities(pids_by_exe(exe, proc), proc)


# ---------------------------------------------------------------- trees


def descendants(root: int, table: dict) -> list:
    """Identities of every descendant of root in the table, parents before children."""
    children: dict = {}
    for ident in table.values():
        children.setdefault(ident.ppid, []).append(ident)
    result = []
    queue = [root]
    seen = {root}
    while queue:
        pid = queue.pop(0)
        for child in sorted(children.get(pid, []), key=lambda i: i.pid):
            if child.pid not in seen:
                seen.add(child.pid)
                result.append(child)
                queue.append(child.pid)
    return result


def ancestors(pid: int, table: dict, proc: str = PROC) -> list:
    """PIDs above pid up to PID 1 (reads /proc for PIDs that are not in the table)."""
    result = []
    seen = set()
    current = pid
    while current > 1 and current not in seen:
        seen.add(current)
        ident = table.get(current)
        if ident is not None:
            current = ident.ppid
        else:
            stat = read_stat(current, proc)
            if stat is None:
                break
            current = stat['ppid']
        result.append(current)
    return result


def reduce_to_roots(pid_list: list, table: dict, proc: str = PROC) -> list:
    """Keep the PIDs none of whose ancestors is also in the list (a parent and its children are one target)."""
    wanted = set(pid_list)
    return sorted(p for p in wanted if not wanted.intersection(ancestors(p, table, proc)))


def children_of(pid: int, proc: str = PROC) -> list | None:
    """Child PIDs of every thread of pid from /proc/PID/task/TID/children; None when the kernel lacks that file."""
    kids = []
    try:
        tids = os.listdir(os.path.join(proc, str(pid), 'task'))
    except (IOError, OSError):
        return []
    for tid in tids:
        try:
            kids.extend(int(x) for x in read(os.path.join(proc, str(pid), 'task', tid, 'children')).split())
        except (IOError, OSError) as e:
            if e.errno == errno.ENOENT and os.path.isdir(os.path.join(proc, str(pid), 'task', tid)):
                return None
    return sorted(set(kids))


def snapshot_tree(root: Identity, with_children: bool, proc: str = PROC) -> list:
    """The root and (optionally) its descendants, as identities taken now (parents before children)."""
    if not with_children:
        return [root]
    members = [root]
    queue = [root.pid]
    seen = {root.pid}
    while queue:
        kids = children_of(queue.pop(0), proc)
        if kids is None:
            return [root] + descendants(root.pid, scan_processes(proc))
        for kid in kids:
            ident = read_identity(kid, proc) if kid not in seen else None
            if ident is not None:
                seen.add(kid)
                members.append(ident)
                queue.append(kid)
    return members
