# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Target resolution: which one process a pid, pidfile, port or executable denotes, proven or refused.

A process is only ever reported as the target after its identity (PID, start time, resolved executable) satisfies
every constraint given; anything ambiguous, stale or protected raises ProcessError, and the caller signals nothing.
"""

from __future__ import annotations

import errno
import json
import os
import stat as _stat
import time

from ansible_collections.opsguard.anqicms.plugins.module_utils import bounds, procfs, sockets
from ansible_collections.opsguard.anqicms.plugins.module_utils.procfs import PROC, ProcessError

# Allowed clock difference between a pidfile's mtime and its process's start time (btime has 1 s resolution).
PIDFILE_SLACK = 2.0
MAX_PIDFILE_BYTES = 4096  # only the first line matters; a pidfile is never read further


def protected_pids(proc: str = PROC) -> set:
    """PID 1, this process and its ancestors: never a target."""
    me = os.getpid()
    return set([1, me] + procfs.ancestors(me, {}, proc))


def describe(ident: procfs.Identity, proc: str = PROC) -> str:
    """``PID 4242 (/opt/a/anqicms, started 2026-01-01 10:00:00)``."""
    started = time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(ident.start_epoch(proc)))
    return 'PID %d (%s, started %s)' % (ident.pid, procfs.strip_deleted(ident.exe) or ident.name, started)


def check_constraints(ident: procfs.Identity, cmdline: list, exe: str | None = None, name: str | None = None,
                      cmdline_pattern: str | None = None) -> list:
    """Return human-readable mismatches between a process and the identity constraints (empty = matches)."""
    problems = []
    if exe and procfs.strip_deleted(ident.exe) != exe:
        problems.append('its executable is %s, expected %s' % (procfs.strip_deleted(ident.exe) or '(none)', exe))
    if name:
        base = os.path.basename(procfs.strip_deleted(ident.exe))
        if name not in (ident.name, base):
            problems.append('its name is %s (executable %s), expected %s' % (ident.name, base or '(none)', name))
    if cmdline_pattern and not bounds.compile_pattern(cmdline_pattern).search(' '.join(cmdline)):
        problems.append('its command line %r does not match %r' % (' '.join(cmdline), cmdline_pattern))
    return problems


def find_matching(table: dict, exe: str | None = None, name: str | None = None, cmdline_pattern: str | None = None,
                  proc: str = PROC, exclude: tuple = ()) -> list:
    """PIDs in the table that satisfy every given constraint (at least one constraint must be given)."""
    if not (exe or name or cmdline_pattern):
        return []
    found = []
    for ident in table.values():
        if ident.pid in exclude or not ident.exe:
            continue
        if exe and procfs.strip_deleted(ident.exe) != exe:
            continue
        cmdline = procfs.read_cmdline(ident.pid, proc) if cmdline_pattern else []
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
            try:
                shown = ' (to %s)' % os.readlink(path)
            except (IOError, OSError):
                shown = ''
            raise ProcessError('pidfile %s is a symbolic link%s: refused, nothing signalled. Give the path of the '
                               'pidfile itself.' % (path, shown))
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
    if not bounds.ASCII_DIGITS.fullmatch(first) or not first.strip('0'):
        raise ProcessError('pidfile %s does not hold a PID (content %r); expected a positive decimal number on the first line; nothing signalled'
                           % (path, text[:40]))
    limit = bounds.pid_max(proc)
    if len(first) > 8 or int(first) >= limit:
        raise ProcessError('pidfile %s does not hold a PID: %s is above the highest PID this kernel hands out (%d, '
                           '/proc/sys/kernel/pid_max); nothing signalled. Fix or remove the pidfile.' % (path, first[:40], limit - 1))
    return int(first), st.st_mtime


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
        bounds.check_pid(pid, 'pid', proc)
    if port is not None:
        bounds.check_port(port, 'port')
    if cmdline_pattern is not None:
        bounds.compile_pattern(cmdline_pattern)
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
            table = procfs.scan_by_exe(exe, proc) if exe else procfs.scan_processes(proc)
        return table

    def stopped(reason: str) -> dict:
        if given:
            others = find_matching(get_table(), exclude=tuple(protected), proc=proc, **constraints)
            if others:
                raise ProcessError('%s, but %s matching %s is running: the target description does not fit the running '
                                   'process; nothing signalled. Target it by exe or pid instead.'
                                   % (reason, ', '.join(describe(get_table()[p], proc) for p in others[:5]),
                                      json.dumps(given, sort_keys=True)))
        return {'running': False, 'identity': None, 'reason': reason}

    def prove(ident: procfs.Identity, source: str) -> dict:
        if ident.pid in protected:
            raise ProcessError('%s is PID 1, this module or one of its ancestors: refused, nothing signalled' % source)
        if not ident.exe:
            raise ProcessError('%s is a kernel thread or its executable cannot be read: refused, nothing signalled' % source)
        problems = check_constraints(ident, procfs.read_cmdline(ident.pid, proc), **constraints)
        if problems:
            raise ProcessError('%s is %s but %s; it is not the expected process (stale pidfile or reused PID?): '
                               'nothing signalled. Fix the pidfile/PID or the identity constraints.'
                               % (source, describe(ident, proc), '; '.join(problems)))
        return {'running': True, 'identity': ident, 'reason': '%s is %s' % (source, describe(ident, proc))}

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
        ident = procfs.read_identity(pid, proc, need_tgid=True)
        if ident is None:
            return stopped('%s is not running' % source + (' (stale pidfile)' if pidfile else ''))
        if ident.tgid != ident.pid:
            raise ProcessError('%s is a thread of PID %d, not a process: refused, nothing signalled' % (source, ident.tgid))
        if mtime is not None and ident.start_epoch(proc) > mtime + PIDFILE_SLACK:
            raise ProcessError('%s is %s, which started %.1f s after the pidfile was written: the pidfile is stale and the PID '
                               'was reused by another process; nothing signalled. Remove the stale pidfile.'
                               % (source, describe(ident, proc), ident.start_epoch(proc) - mtime))
        return prove(ident, source)

    if port is not None:
        inodes = sockets.listener_inodes(sockets.tcp_table(sockets.TCP_LISTEN, None, {port}, proc), port)
        if not inodes:
            return stopped('nothing listens on TCP port %d' % port)
        full = procfs.scan_processes(proc)
        owners = sockets.owners_of(inodes, full, proc)
        if not owners:
            raise ProcessError('TCP port %d has a listener but no process visible here holds it (another PID namespace?): '
                               'nothing signalled' % port)
        roots = procfs.reduce_to_roots(owners, full, proc)
        if len(roots) > 1:
            raise ProcessError('TCP port %d is held by several unrelated processes: %s; nothing signalled. Target one by pid.'
                               % (port, ', '.join(describe(full[p], proc) for p in roots)))
        return prove(full[roots[0]], 'the process listening on TCP port %d' % port)

    if exe:
        matches = find_matching(get_table(), exclude=tuple(protected), proc=proc, **constraints)
        if not matches:
            return {'running': False, 'identity': None, 'reason': 'no process runs %s' % exe}
        roots = procfs.reduce_to_roots(matches, get_table(), proc)
        if len(roots) > 1:
            raise ProcessError('%d unrelated processes run %s: %s; nothing signalled. Give a pid, pidfile or port, or a '
                               'cmdline_pattern that tells them apart.'
                               % (len(roots), exe, ', '.join(describe(get_table()[p], proc) for p in roots)))
        return prove(get_table()[roots[0]], 'the process running %s' % exe)

    raise ProcessError('no target given: one of pid, pidfile, port, systemd_unit or exe is required')
