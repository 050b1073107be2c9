# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Process identity, process trees, sockets and signalling read straight from /proc.

Everything here reads /proc files directly (no subprocess per process) so that it stays
cheap on a host that is short of memory.  An identity is (PID, start time in clock ticks
since boot, resolved executable); a process is only signalled after its identity has been
proven again, and through a pidfd where the kernel offers one, so a reused PID is never hit.
"""

from __future__ import annotations

import errno
import json
import os
import re
import select
import signal as _signal
import socket
import stat as _stat
import struct
import tempfile
import time

PROC = '/proc'
CLK_TCK = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100
PAGE_SIZE = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 4096
DELETED_SUFFIX = ' (deleted)'
TCP_ESTABLISHED = 1
TCP_LISTEN = 10
# Allowed clock difference between a pidfile's mtime and its process's start time (btime has 1 s resolution).
PIDFILE_SLACK = 2.0
CRON_FILES = ('/etc/crontab',)
CRON_DIRS = ('/etc/cron.d', '/var/spool/cron/crontabs', '/var/spool/cron')
# Bounds of the options (validated before anything is read or signalled).
PID_MAX_LIMIT = 4194304  # the kernel's PID_MAX_LIMIT on 64-bit: pid_max can never be higher
MAX_WAIT_SECONDS = 86400.0  # longest wait of any duration option (one day)
MAX_PORT = 65535
MAX_PATTERN_LENGTH = 4096
MAX_PIDFILE_BYTES = 4096  # only the first line matters; a pidfile is never read further
_ASCII_DIGITS = re.compile(r'[0-9]+')


class ProcessError(Exception):
    """A refusal or failure with an operator-facing message."""


# ---------------------------------------------------------------- option bounds


def pid_max(proc: str = PROC) -> int:
    """The kernel's pid_max (highest PID + 1 it hands out); PID_MAX_LIMIT when it cannot be read or makes no sense."""
    try:
        text = _read(os.path.join(proc, 'sys', 'kernel', 'pid_max')).strip()
    except (IOError, OSError, ValueError):
        return PID_MAX_LIMIT
    if not _ASCII_DIGITS.fullmatch(text) or len(text) > 8:
        return PID_MAX_LIMIT
    return min(max(int(text), 2), PID_MAX_LIMIT)


def check_pid(value, what: str = 'pid', proc: str = PROC) -> int:
    """value as a PID the kernel could hand out (1 .. pid_max - 1), or ProcessError."""
    limit = pid_max(proc)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < limit:
        raise ProcessError('%s must be a process ID between 1 and %d (/proc/sys/kernel/pid_max is %d), got %r'
                           % (what, limit - 1, limit, value))
    return value


def check_port(value, what: str = 'port') -> int:
    """value as a TCP port (1 .. 65535), or ProcessError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PORT:
        raise ProcessError('%s must be a TCP port between 1 and %d, got %r' % (what, MAX_PORT, value))
    return value


def check_duration(value, what: str = 'timeout', maximum: float = MAX_WAIT_SECONDS) -> float:
    """value as a number of seconds, finite and within 0 .. maximum (NaN and infinities refused), or ProcessError."""
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        seconds = float('nan')
    if isinstance(value, bool) or not 0.0 <= seconds <= maximum:  # NaN fails every comparison
        raise ProcessError('%s must be a number of seconds from 0 to %d, got %r' % (what, maximum, value))
    return seconds


def compile_pattern(pattern: str, what: str = 'cmdline_pattern'):
    """pattern compiled as a Python regular expression, or ProcessError naming the problem."""
    if not isinstance(pattern, str) or not pattern:
        raise ProcessError('%s must be a non-empty regular expression, got %r' % (what, pattern))
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ProcessError('%s is %d characters long; at most %d are accepted' % (what, len(pattern), MAX_PATTERN_LENGTH))
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError, TypeError) as e:
        raise ProcessError('%s %r is not a valid Python regular expression: %s' % (what, pattern[:200], e or type(e).__name__))


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
        return boot_time(proc) + float(self.start_ticks) / CLK_TCK

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


def strip_deleted(exe: str) -> str:
    if exe.endswith(DELETED_SUFFIX):
        return exe[:-len(DELETED_SUFFIX)]
    return exe


def _read(path: str) -> str:
    with open(path, 'rb') as f:
        return f.read().decode('utf-8', 'surrogateescape')


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
    }


_BOOT_TIME: dict = {}


def boot_time(proc: str = PROC) -> float:
    if proc not in _BOOT_TIME:
        for line in _read(os.path.join(proc, 'stat')).splitlines():
            if line.startswith('btime '):
                _BOOT_TIME[proc] = float(line.split()[1])
                break
        else:
            raise ProcessError('%s/stat has no btime line' % proc)
    return _BOOT_TIME[proc]


def read_identity(pid: int, proc: str = PROC, need_tgid: bool = False) -> Identity | None:
    """Identity of PID, or None when no such process exists (or it is a zombie)."""
    base = os.path.join(proc, str(pid))
    try:
        stat = parse_stat(_read(base + '/stat'))
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
            for line in _read(base + '/status').splitlines():
                if line.startswith('Tgid:'):
                    tgid = int(line.split()[1])
                    break
        except (IOError, OSError):
            return None
    return Identity(pid, stat['ppid'], stat['start_ticks'], exe, stat['comm'], stat['state'], tgid)


def read_cmdline(pid: int, proc: str = PROC) -> list:
    try:
        raw = _read(os.path.join(proc, str(pid), 'cmdline'))
    except (IOError, OSError):
        return []
    if not raw:
        return []
    parts = raw.split('\0')
    if parts[-1] == '':
        parts.pop()
    return parts


def rss_bytes(pid: int, proc: str = PROC) -> int:
    try:
        return int(_read(os.path.join(proc, str(pid), 'statm')).split()[1]) * PAGE_SIZE
    except (IOError, OSError, IndexError, ValueError):
        return 0


def scan_processes(proc: str = PROC) -> dict:
    """Map PID -> Identity for every live process (one pass over /proc)."""
    table = {}
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            ident = read_identity(int(entry), proc)
        except ProcessError:
            continue
        if ident is not None:
            table[ident.pid] = ident
    return table


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
            try:
                current = parse_stat(_read(os.path.join(proc, str(current), 'stat')))['ppid']
            except (IOError, OSError, ValueError):
                break
        result.append(current)
    return result


def reduce_to_roots(pids: list, table: dict, proc: str = PROC) -> list:
    """Keep the PIDs none of whose ancestors is also in the list (a parent and its children are one target)."""
    wanted = set(pids)
    return sorted(p for p in wanted if not wanted.intersection(ancestors(p, table, proc)))


def check_constraints(ident: Identity, cmdline: list, exe: str | None = None, name: str | None = None,
                      cmdline_pattern: str | None = None) -> list:
    """Return human-readable mismatches between a process and the identity constraints (empty = matches)."""
    problems = []
    if exe and strip_deleted(ident.exe) != exe:
        problems.append('its executable is %s, expected %s' % (strip_deleted(ident.exe) or '(none)', exe))
    if name:
        base = os.path.basename(strip_deleted(ident.exe))
        if name not in (ident.name, base):
            problems.append('its name is %s (executable %s), expected %s' % (ident.name, base or '(none)', name))
    if cmdline_pattern and not compile_pattern(cmdline_pattern).search(' '.join(cmdline)):
        problems.append('its command line %r does not match %r' % (' '.join(cmdline), cmdline_pattern))
    return problems


def scan_by_exe(exe: str, proc: str = PROC) -> dict:
    """Map PID -> Identity of the processes whose resolved executable is exe (readlink first, stat only on a match)."""
    table = {}
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            if strip_deleted(os.readlink(os.path.join(proc, entry, 'exe'))) != exe:
                continue
            ident = read_identity(int(entry), proc)
        except (IOError, OSError, ProcessError):
            continue
        if ident is not None:
            table[ident.pid] = ident
    return table


def find_matching(table: dict, exe: str | None = None, name: str | None = None, cmdline_pattern: str | None = None,
                  proc: str = PROC, exclude: tuple = ()) -> list:
    """PIDs in the table that satisfy every given constraint (at least one constraint must be given)."""
    if not (exe or name or cmdline_pattern):
        return []
    found = []
    for ident in table.values():
        if ident.pid in exclude or not ident.exe:
            continue
        if exe and strip_deleted(ident.exe) != exe:
            continue
        cmdline = read_cmdline(ident.pid, proc) if cmdline_pattern else []
        if not check_constraints(ident, cmdline, exe, name, cmdline_pattern):
            found.append(ident.pid)
    return sorted(found)


def read_pidfile(path: str, proc: str = PROC) -> tuple:
    """(pid, mtime) from a pidfile; (None, None) when the file does not exist.

    The file is untrusted input: it must be a regular file (a symbolic link, FIFO, device or directory is refused;
    a FIFO would block forever), only its first MAX_PIDFILE_BYTES are read, and its first line must be an ASCII
    decimal PID the kernel could hand out (1 .. pid_max - 1).  mtime comes from the very file that was read.
    """
    if not isinstance(path, str) or not path or '\0' in path:
        raise ProcessError('pidfile must be a non-empty path without NUL bytes, got %r' % (path,))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0))
    except (IOError, OSError) as e:
        if e.errno == errno.ENOENT:
            return None, None
        if e.errno == errno.ELOOP and os.path.islink(path):
            raise ProcessError('pidfile %s is a symbolic link (to %s): refused, nothing signalled. Give the path of the '
                               'pidfile itself.' % (path, os.readlink(path)))
        raise ProcessError('cannot read pidfile %s: %s' % (path, e))
    try:
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode):
            raise ProcessError('pidfile %s is not a regular file (mode %o): refused, nothing signalled' % (path, st.st_mode))
        data = os.read(fd, MAX_PIDFILE_BYTES)
    except (IOError, OSError) as e:
        raise ProcessError('cannot read pidfile %s: %s' % (path, e))
    finally:
        os.close(fd)
    text = data.decode('utf-8', 'surrogateescape')
    first = text.strip(' \t\r\n').split('\n', 1)[0].strip(' \t\r')
    if not _ASCII_DIGITS.fullmatch(first) or not first.strip('0'):
        raise ProcessError('pidfile %s does not hold a PID (content %r); expected a positive decimal number on the first line; nothing signalled'
                           % (path, text[:40]))
    limit = pid_max(proc)
    if len(first) > 8 or int(first) >= limit:
        raise ProcessError('pidfile %s does not hold a PID: %s is above the highest PID this kernel hands out (%d, '
                           '/proc/sys/kernel/pid_max); nothing signalled. Fix or remove the pidfile.' % (path, first[:40], limit - 1))
    return int(first), st.st_mtime


# ---------------------------------------------------------------- sockets


def _hex_to_ip(hexaddr: str) -> str:
    """Address field of /proc/net/tcp{,6}: 32-bit words in host (little-endian) byte order."""
    raw = b''.join(bytes.fromhex(hexaddr[i:i + 8])[::-1] for i in range(0, len(hexaddr), 8))
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if raw[:12] == b'\0' * 10 + b'\xff\xff':
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return socket.inet_ntop(socket.AF_INET6, raw)


def parse_net_tcp(text: str, state: int | None = None, ports: set | None = None, addresses: bool = True) -> list:
    """Parse /proc/net/tcp or tcp6 into dicts (local, local_port, remote, remote_port, state, inode).

    state / ports filter before anything else is decoded; addresses=False skips decoding the IP addresses
    (the dicts then hold the raw hex), which keeps a scan of a busy host's table cheap.
    """
    entries = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10:
            continue
        st = int(parts[3], 16)
        if state is not None and st != state:
            continue
        local, remote = parts[1], parts[2]
        lport = int(local[-4:], 16)
        if ports is not None and lport not in ports:
            continue
        entries.append({
            'local': _hex_to_ip(local[:-5]) if addresses else local[:-5],
            'local_port': lport,
            'remote': _hex_to_ip(remote[:-5]) if addresses else remote[:-5],
            'remote_port': int(remote[-4:], 16),
            'state': st,
            'inode': int(parts[9]),
        })
    return entries


def read_tcp(pid: int | None = None, proc: str = PROC, state: int | None = None, ports: set | None = None,
             addresses: bool = True) -> list:
    """TCP sockets of the network namespace of pid (or of the caller), optionally filtered (see parse_net_tcp)."""
    base = os.path.join(proc, str(pid), 'net') if pid else os.path.join(proc, 'net')
    entries = []
    for name in ('tcp', 'tcp6'):
        try:
            entries.extend(parse_net_tcp(_read(os.path.join(base, name)), state, ports, addresses))
        except (IOError, OSError) as e:
            if e.errno not in (errno.ENOENT, errno.ESRCH):
                raise ProcessError('cannot read %s/%s: %s' % (base, name, e))
    return entries


NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
ALL_TCP_STATES = 0xfff


def _diag_dump(family: int, states: int) -> list:
    """TCP sockets of the caller's network namespace through NETLINK_SOCK_DIAG (filtered by state in the kernel)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
    try:
        sock.settimeout(5)
        request = struct.pack('=BBBBI', family, socket.IPPROTO_TCP, 0, 0, states) + b'\0' * 48
        sock.sendto(struct.pack('=IHHII', 16 + len(request), SOCK_DIAG_BY_FAMILY, 0x301, 1, 0) + request, (0, 0))
        entries = []
        size = 4 if family == socket.AF_INET else 16
        for dummy in range(100000):
            data = sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from('=IH', data, offset)
                if kind == 3:  # NLMSG_DONE
                    return entries
                if kind == 2:  # NLMSG_ERROR
                    code = -struct.unpack_from('=i', data, offset + 16)[0]
                    raise OSError(code, os.strerror(code))
                body = offset + 16
                state = data[body + 1]
                sport, dport = struct.unpack_from('>HH', data, body + 4)
                entries.append({
                    'local': socket.inet_ntop(family, data[body + 8:body + 8 + size]),
                    'local_port': sport,
                    'remote': socket.inet_ntop(family, data[body + 24:body + 24 + size]),
                    'remote_port': dport,
                    'state': state,
                    'inode': struct.unpack_from('=I', data, body + 68)[0],
                })
                offset += (length + 3) & ~3
        return entries
    finally:
        sock.close()


def _same_netns(pid: int | None, proc: str = PROC) -> bool:
    if pid is None:
        return True
    try:
        return os.readlink(os.path.join(proc, 'self', 'ns', 'net')) == os.readlink(os.path.join(proc, str(pid), 'ns', 'net'))
    except (IOError, OSError):
        return False


def tcp_table(state: int | None = None, pid: int | None = None, ports: set | None = None, proc: str = PROC) -> list:
    """TCP sockets in one state (or all) of pid's network namespace (the caller's when pid is None).

    Uses NETLINK_SOCK_DIAG when that namespace is the caller's (cheap: the kernel filters by state); falls back to
    /proc/PID/net/tcp{,6} otherwise or when netlink is refused.
    """
    if proc == PROC and _same_netns(pid, proc):
        try:
            mask = ALL_TCP_STATES if state is None else 1 << state
            entries = _diag_dump(socket.AF_INET, mask) + _diag_dump(socket.AF_INET6, mask)
            if ports is not None:
                entries = [e for e in entries if e['local_port'] in ports]
            return entries
        except (IOError, OSError):
            pass
    return read_tcp(pid, proc, state, ports)


def socket_inodes(pid: int, proc: str = PROC) -> set:
    fd_dir = os.path.join(proc, str(pid), 'fd')
    inodes = set()
    try:
        fds = os.listdir(fd_dir)
    except (IOError, OSError):
        return inodes
    for fd in fds:
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except (IOError, OSError):
            continue
        if target.startswith('socket:['):
            inodes.add(int(target[8:-1]))
    return inodes


def listening_ports(entries: list, inodes: set) -> list:
    return sorted(set(e['local_port'] for e in entries if e['state'] == TCP_LISTEN and e['inode'] in inodes))


def listener_inodes(entries: list, port: int) -> set:
    return set(e['inode'] for e in entries if e['state'] == TCP_LISTEN and e['local_port'] == port and e['inode'])


def owners_of(inodes: set, table: dict, proc: str = PROC) -> list:
    """PIDs holding any of the socket inodes."""
    if not inodes:
        return []
    return sorted(pid for pid in table if socket_inodes(pid, proc) & inodes)


def client_connections(entries: list, ports: list, inodes: set | None = None) -> list:
    """Established connections accepted on one of the ports (owned by inodes when given, or not yet accepted)."""
    wanted = set(ports)
    found = []
    for e in entries:
        if e['state'] != TCP_ESTABLISHED or e['local_port'] not in wanted:
            continue
        if inodes is not None and e['inode'] and e['inode'] not in inodes:
            continue
        found.append(e)
    return found


def port_listening(port: int, pid_for_netns: int | None = None, proc: str = PROC) -> bool:
    return bool(tcp_table(TCP_LISTEN, pid_for_netns, {port}, proc))


# ---------------------------------------------------------------- watchdogs


def cron_watchdogs(directory: str, exe: str, files: tuple | None = None) -> list:
    """Cron lines that would start this instance again: a start.sh in its directory, or its binary."""
    paths = list(files) if files is not None else list(CRON_FILES)
    if files is None:
        for d in CRON_DIRS:
            try:
                paths.extend(os.path.join(d, n) for n in sorted(os.listdir(d)) if not n.startswith('.'))
            except (IOError, OSError):
                continue
    directory = directory.rstrip('/') or '/'
    start_sh = os.path.join(directory, 'start.sh')
    dir_re = re.compile(r'(?<![\w./-])' + re.escape(directory) + r'/?(?![\w.-])')
    found = []
    for path in paths:
        if not os.path.isfile(path):
            continue
        try:
            lines = _read(path).splitlines()
        except (IOError, OSError):
            continue
        for number, line in enumerate(lines, 1):
            text = line.strip()
            if not text or text.startswith('#'):
                continue
            hit = start_sh in text or (exe and re.search(re.escape(exe) + r'(?![\w.-])', text))
            if not hit and dir_re.search(text) and re.search(r'(?<![\w.-])(\./)?start\.sh\b', text):
                hit = True
            if hit:
                found.append({'type': 'cron', 'file': path, 'line_number': number, 'line': text})
    return found


def systemd_unit_of(pid: int, proc: str = PROC) -> str | None:
    """The systemd service whose cgroup holds pid, if any."""
    try:
        text = _read(os.path.join(proc, str(pid), 'cgroup'))
    except (IOError, OSError):
        return None
    for line in text.splitlines():
        parts = line.split(':', 2)
        if len(parts) == 3 and parts[1] in ('name=systemd', ''):
            for comp in reversed(parts[2].split('/')):
                if comp.endswith('.service'):
                    return comp
    return None


# ---------------------------------------------------------------- diagnostics


def _kv_file(path: str) -> dict:
    result = {}
    try:
        for line in _read(path).splitlines():
            if ':' in line:
                key, value = line.split(':', 1)
                result[key.strip()] = value.strip()
    except (IOError, OSError):
        pass
    return result


def collect_diagnostics(ident: Identity, tree: list, proc: str = PROC, max_fds: int = 2000) -> dict:
    """Post-mortem material of a process (never its environment)."""
    base = os.path.join(proc, str(ident.pid))
    threads = []
    try:
        for tid in sorted(os.listdir(base + '/task'), key=int)[:max_fds]:
            try:
                st = parse_stat(_read('%s/task/%s/stat' % (base, tid)))
                threads.append({'tid': int(tid), 'name': st['comm'], 'state': st['state']})
            except (IOError, OSError, ValueError):
                continue
    except (IOError, OSError):
        pass
    fds = []
    try:
        names = sorted(os.listdir(base + '/fd'), key=int)
    except (IOError, OSError):
        names = []
    for fd in names[:max_fds]:
        try:
            fds.append({'fd': int(fd), 'target': os.readlink('%s/fd/%s' % (base, fd))})
        except (IOError, OSError):
            continue
    inodes = set()
    for entry in fds:
        if entry['target'].startswith('socket:['):
            inodes.add(int(entry['target'][8:-1]))
    try:
        connections = [e for e in tcp_table(None, ident.pid, None, proc) if e['inode'] in inodes]
    except ProcessError:
        connections = []
    try:
        limits = _read(base + '/limits').splitlines()
    except (IOError, OSError):
        limits = []
    try:
        cgroup = _read(base + '/cgroup').splitlines()
    except (IOError, OSError):
        cgroup = []
    oom = {}
    for key in ('oom_score', 'oom_score_adj'):
        try:
            oom[key] = int(_read('%s/%s' % (base, key)).strip())
        except (IOError, OSError, ValueError):
            continue
    return {
        'collected_at': time.time(),
        'identity': ident.as_dict(proc),
        'cmdline': read_cmdline(ident.pid, proc),
        'status': _kv_file(base + '/status'),
        'smaps_rollup': _kv_file(base + '/smaps_rollup'),
        'threads': threads,
        'fd_count': len(names),
        'fds': fds,
        'connections': connections,
        'limits': limits,
        'cgroup': cgroup,
        'oom': oom,
        'meminfo': _kv_file(os.path.join(proc, 'meminfo')),
        'tree': [dict(m.as_dict(proc), rss_bytes=rss_bytes(m.pid, proc)) for m in tree],
    }


def write_json_private(directory: str, filename: str, data: dict) -> str:
    """Write data as JSON readable by its owner only (a new temp file, then rename); ProcessError on failure.

    The temp file is created exclusively (never through a planted file or symlink); filename must be a plain name.
    """
    if not filename or '/' in filename or filename in ('.', '..') or '\0' in filename or '\0' in directory:
        raise ProcessError('diagnostics file name %r is not a plain file name' % (filename,))
    tmp = None
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o700)
        path = os.path.join(directory, filename)
        fd, tmp = tempfile.mkstemp(prefix='.' + filename[:64] + '.', suffix='.tmp', dir=directory)
        with os.fdopen(fd, 'w') as f:
            json.dump(data, f, indent=1, sort_keys=True, default=str)
        os.rename(tmp, path)
        tmp = None
        return path
    except (IOError, OSError, ValueError) as e:
        raise ProcessError('cannot write diagnostics to %s: %s; nothing signalled. Choose a directory root can write.'
                           % (directory, e))
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


# ---------------------------------------------------------------- signalling


def signal_number(value) -> int:
    """SIGTERM / TERM / 15 -> 15."""
    text = str(value).strip().upper()
    if _ASCII_DIGITS.fullmatch(text):
        number = int(text) if len(text) <= 4 else 0
        if 0 < number < _signal.NSIG:
            return number
    else:
        if not text.startswith('SIG'):
            text = 'SIG' + text
        number = getattr(_signal, text, None)
        if isinstance(number, int) and number > 0 and not text.startswith('SIG_'):
            return int(number)
    raise ProcessError('unknown signal %r; expected a name like SIGTERM or a number' % (value,))


def signal_name(number: int) -> str:
    try:
        return _signal.Signals(number).name
    except ValueError:
        return str(number)


class Tracked(object):
    """A proven process, pinned by a pidfd where available."""

    def __init__(self, ident: Identity, proc: str = PROC, use_pidfd: bool = True) -> None:
        self.ident = ident
        self.proc = proc
        self.pidfd = None
        self.rss = rss_bytes(ident.pid, proc)
        self.gone = False
        if use_pidfd and hasattr(os, 'pidfd_open') and proc == PROC:
            try:
                self.pidfd = os.pidfd_open(ident.pid)
            except (IOError, OSError) as e:
                if e.errno == errno.ESRCH:
                    self.gone = True
                    return
                self.pidfd = None
        # Proof after pinning: the pidfd now denotes whatever holds the PID; it must be the proven process.
        if not self.proven():
            self.gone = True
            self.close()

    def proven(self) -> bool:
        current = read_identity(self.ident.pid, self.proc)
        return self.ident.same(current)

    def alive(self) -> bool:
        if self.gone:
            return False
        if self.pidfd is not None:
            ready = select.select([self.pidfd], [], [], 0)[0]
            if ready:
                self.gone = True
                self.close()
                return False
            return True
        if not self.proven():
            self.gone = True
        return not self.gone

    def send(self, signum: int) -> str | None:
        """Send signum after re-proving identity; return the method used or None when the process is gone."""
        if not self.alive():
            return None
        if not self.proven():
            if self.pidfd is not None and self.alive():
                raise ProcessError('PID %d changed identity (now %r, was %r): not signalled'
                                   % (self.ident.pid, read_identity(self.ident.pid, self.proc), self.ident))
            self.gone = True
            return None
        try:
            if self.pidfd is not None:
                _signal.pidfd_send_signal(self.pidfd, signum)
                return 'pidfd'
            os.kill(self.ident.pid, signum)
            return 'kill'
        except (IOError, OSError) as e:
            if e.errno == errno.ESRCH:
                self.gone = True
                return None
            raise ProcessError('cannot send %s to PID %d: %s' % (signal_name(signum), self.ident.pid, e))

    def close(self) -> None:
        if self.pidfd is not None:
            try:
                os.close(self.pidfd)
            except OSError:
                pass
            self.pidfd = None


def wait_gone(tracked: list, timeout: float, interval: float = 0.02) -> list:
    """Wait until every tracked process has exited or timeout passes; return the ones still alive.

    timeout must be finite and within 0 .. MAX_WAIT_SECONDS (ProcessError otherwise, before any wait); one
    select() never waits more than 1 s, so no value can overflow the kernel's time type.
    """
    deadline = time.monotonic() + check_duration(timeout, 'timeout')
    while True:
        alive = [t for t in tracked if t.alive()]
        remaining = deadline - time.monotonic()
        if not alive or remaining <= 0:
            return alive
        fds = [t.pidfd for t in alive if t.pidfd is not None]
        if fds and len(fds) == len(alive):
            select.select(fds, [], [], min(remaining, 1.0))
        else:
            time.sleep(min(interval, remaining))


def children_of(pid: int, proc: str = PROC) -> list | None:
    """Child PIDs of every thread of pid from /proc/PID/task/TID/children; None when the kernel lacks that file."""
    kids = []
    try:
        tids = os.listdir(os.path.join(proc, str(pid), 'task'))
    except (IOError, OSError):
        return []
    for tid in tids:
        try:
            kids.extend(int(x) for x in _read(os.path.join(proc, str(pid), 'task', tid, 'children')).split())
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


def stop_processes(members: list, signum: int, timeout: float, escalate: bool, kill_timeout: float = 5.0,
                   with_children: bool = True, proc: str = PROC, use_pidfd: bool = True, signals: list | None = None) -> dict:
    """Signal a proven tree (root first), wait, escalate to SIGKILL; report what happened.

    members: identities (root first) taken before the first signal.  Every one is pinned and re-proven
    before each signal; one that no longer proves is treated as gone and never signalled.
    timeout and kill_timeout are checked before anything is signalled (ProcessError).
    signals: a list the caller owns, filled as each signal is sent, so that what was done is known even when
    an exception ends the stop half-way.
    """
    check_duration(timeout, 'timeout')
    check_duration(kill_timeout, 'kill_timeout')
    signum = signal_number(signum)
    started = time.monotonic()
    tracked = [Tracked(m, proc, use_pidfd) for m in members]
    rss_before = sum(t.rss for t in tracked if not t.gone)
    if signals is None:
        signals = []

    def send_all(items: list, signum_: int) -> None:
        for item in items:
            how = item.send(signum_)
            if how:
                signals.append({'pid': item.ident.pid, 'signal': signal_name(signum_), 'time': round(time.time(), 3),
                                'elapsed': round(time.monotonic() - started, 3), 'via': how})

    try:
        root = tracked[0]
        if root.gone:
            return {'outcome': 'already_stopped', 'signals': signals, 'stop_duration': 0.0,
                    'rss_freed_bytes': 0, 'survivors': [], 'pids': [m.pid for m in members]}
        send_all([root] + (tracked[1:] if with_children else []), signum)
        survivors = wait_gone(tracked, timeout)
        forced = False
        if survivors and escalate:
            if with_children:
                # Children born during shutdown of a still-proven parent are part of the tree too.
                known = set(t.ident.pid for t in tracked)
                for parent in list(survivors):
                    for child in snapshot_tree(parent.ident, True, proc)[1:]:
                        if child.pid not in known and parent.proven():
                            extra = Tracked(child, proc, use_pidfd)
                            tracked.append(extra)
                            known.add(child.pid)
                            if not extra.gone:
                                survivors.append(extra)
            forced = True
            send_all(survivors, _signal.SIGKILL)
            survivors = wait_gone(survivors, kill_timeout)
        freed = sum(t.rss for t in tracked if t.gone or not t.alive())
        return {
            'outcome': 'stopped_forced' if forced else 'stopped_gracefully',
            'signals': signals,
            'stop_duration': round(time.monotonic() - started, 3),
            'rss_before_bytes': rss_before,
            'rss_freed_bytes': freed,
            'survivors': [t.ident.as_dict(proc) for t in survivors],
            'pids': [t.ident.pid for t in tracked],
        }
    finally:
        for t in tracked:
            t.close()


def wait_drained(pid: int, ports: list, timeout: float, interval: float = 0.1, proc: str = PROC, members: list | None = None) -> dict:
    """Wait until no established client connection remains on ports (or timeout passes); report counts.

    Reads the TCP table of the target's network namespace; a connection counts when its local port is one of
    the ports and it belongs to the target tree (a socket inode of pid or of members), or is still in the accept
    queue (no inode yet).
    """
    started = time.monotonic()
    deadline = started + check_duration(timeout, 'drain_timeout')
    first = None
    owners = [pid] + [m for m in (members or []) if m != pid]
    while True:
        inodes = set()
        for owner in owners:
            inodes |= socket_inodes(owner, proc)
        count = len(client_connections(tcp_table(TCP_ESTABLISHED, pid, set(ports), proc), ports, inodes))
        if first is None:
            first = count
        remaining = deadline - time.monotonic()
        if count == 0 or remaining <= 0:
            return {'enabled': True, 'ports': list(ports), 'connections_at_start': first, 'connections_left': count,
                    'duration': round(time.monotonic() - started, 3), 'timed_out': count > 0}
        time.sleep(min(interval, remaining))


def wait_port_released(ports: list, timeout: float, interval: float = 0.05, proc: str = PROC) -> bool:
    """True once none of the ports has a listener in the caller's network namespace (bounded by timeout)."""
    deadline = time.monotonic() + check_duration(timeout, 'port_release_timeout')
    while True:
        if not tcp_table(TCP_LISTEN, None, set(ports), proc):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))


# ---------------------------------------------------------------- target resolution


def protected_pids(proc: str = PROC) -> set:
    """PID 1, this process and its ancestors: never a target."""
    me = os.getpid()
    return set([1, me] + ancestors(me, {}, proc))


def _describe(ident: Identity, proc: str = PROC) -> str:
    started = time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(ident.start_epoch(proc)))
    return 'PID %d (%s, started %s)' % (ident.pid, strip_deleted(ident.exe) or ident.name, started)


def resolve_target(pid: int | None = None, pidfile: str | None = None, port: int | None = None, exe: str | None = None,
                   name: str | None = None, cmdline_pattern: str | None = None, proc: str = PROC) -> dict:
    """Find and prove the target.  Returns {'running': bool, 'identity': Identity|None, 'reason': str}.

    Raises ProcessError when the target cannot be positively identified: the caller must then signal nothing.
    Rules:
    - pid: the PID must exist as a process (not a thread) and satisfy every constraint; a missing PID is stopped.
    - pidfile: missing or naming a dead PID = stopped.  A live PID must satisfy every constraint and must not
      have started after the pidfile was last written (that is PID reuse).
    - port: the process(es) holding the listening socket; a parent and the children it shares it with are one
      target, unrelated holders are refused.  No listener = stopped.
    - exe alone: processes whose resolved /proc/PID/exe is exe; one process tree = the target, several = refused.
    - "stopped" is only reported when, if exe/name/cmdline_pattern are given, no process satisfying them runs
      anywhere else on the host either (otherwise the description does not fit what is running: refused).
    """
    # Every argument is checked before /proc is read for a target: bad input is refused, never read as "stopped".
    if pid is not None:
        check_pid(pid, 'pid', proc)
    if port is not None:
        check_port(port, 'port')
    if cmdline_pattern is not None:
        compile_pattern(cmdline_pattern)
    for key, value in (('exe', exe), ('name', name), ('pidfile', pidfile)):
        if value is not None and (not isinstance(value, str) or not value or '\0' in value):
            raise ProcessError('%s must be a non-empty string without NUL bytes, got %r' % (key, value))
    if exe is not None and not os.path.isabs(exe):
        raise ProcessError('exe must be an absolute path, got %r' % exe)
    constraints = {'exe': exe, 'name': name, 'cmdline_pattern': cmdline_pattern}
    given = dict((k, v) for k, v in constraints.items() if v)
    protected = protected_pids(proc)
    table = None

    def get_table() -> dict:
        nonlocal table
        if table is None:
            table = scan_by_exe(exe, proc) if exe else scan_processes(proc)
        return table

    def stopped(reason: str) -> dict:
        if given:
            others = find_matching(get_table(), exclude=tuple(protected), proc=proc, **constraints)
            if others:
                raise ProcessError('%s, but %s matching %s is running: the target description does not fit the running '
                                   'process; nothing signalled. Target it by exe or pid instead.'
                                   % (reason, ', '.join(_describe(get_table()[p], proc) for p in others[:5]),
                                      json.dumps(given, sort_keys=True)))
        return {'running': False, 'identity': None, 'reason': reason}

    def prove(ident: Identity, source: str) -> dict:
        if ident.pid in protected:
            raise ProcessError('%s is PID 1, this module or one of its ancestors: refused, nothing signalled' % source)
        if not ident.exe:
            raise ProcessError('%s is a kernel thread or its executable cannot be read: refused, nothing signalled' % source)
        problems = check_constraints(ident, read_cmdline(ident.pid, proc), **constraints)
        if problems:
            raise ProcessError('%s is %s but %s; it is not the expected process (stale pidfile or reused PID?): '
                               'nothing signalled. Fix the pidfile/PID or the identity constraints.'
                               % (source, _describe(ident, proc), '; '.join(problems)))
        return {'running': True, 'identity': ident, 'reason': '%s is %s' % (source, _describe(ident, proc))}

    if pid is not None or pidfile is not None:
        mtime = None
        source = 'PID %s' % pid
        if pidfile is not None:
            pid, mtime = read_pidfile(pidfile, proc)
            if pid is None:
                return stopped('pidfile %s does not exist' % pidfile)
            source = 'PID %d from pidfile %s' % (pid, pidfile)
        if pid in protected:
            raise ProcessError('%s is PID 1, this module or one of its ancestors: refused, nothing signalled' % source)
        ident = read_identity(pid, proc, need_tgid=True)
        if ident is None:
            return stopped('%s is not running' % source + (' (stale pidfile)' if pidfile else ''))
        if ident.tgid != ident.pid:
            raise ProcessError('%s is a thread of PID %d, not a process: refused, nothing signalled' % (source, ident.tgid))
        if mtime is not None and ident.start_epoch(proc) > mtime + PIDFILE_SLACK:
            raise ProcessError('%s is %s, which started %.1f s after the pidfile was written: the pidfile is stale and the PID '
                               'was reused by another process; nothing signalled. Remove the stale pidfile.'
                               % (source, _describe(ident, proc), ident.start_epoch(proc) - mtime))
        return prove(ident, source)

    if port is not None:
        inodes = listener_inodes(tcp_table(TCP_LISTEN, None, {port}, proc), port)
        if not inodes:
            return stopped('nothing listens on TCP port %d' % port)
        full = scan_processes(proc)
        owners = owners_of(inodes, full, proc)
        if not owners:
            raise ProcessError('TCP port %d has a listener but no process visible here holds it (another PID namespace?): '
                               'nothing signalled' % port)
        roots = reduce_to_roots(owners, full, proc)
        if len(roots) > 1:
            raise ProcessError('TCP port %d is held by several unrelated processes: %s; nothing signalled. Target one by pid.'
                               % (port, ', '.join(_describe(full[p], proc) for p in roots)))
        return prove(full[roots[0]], 'the process listening on TCP port %d' % port)

    if exe:
        matches = find_matching(get_table(), exclude=tuple(protected), proc=proc, **constraints)
        if not matches:
            return {'running': False, 'identity': None, 'reason': 'no process runs %s' % exe}
        roots = reduce_to_roots(matches, get_table(), proc)
        if len(roots) > 1:
            raise ProcessError('%d unrelated processes run %s: %s; nothing signalled. Give a pid, pidfile or port, or a '
                               'cmdline_pattern that tells them apart.'
                               % (len(roots), exe, ', '.join(_describe(get_table()[p], proc) for p in roots)))
        return prove(get_table()[roots[0]], 'the process running %s' % exe)

    raise ProcessError('no target given: one of pid, pidfile, port, systemd_unit or exe is required')
