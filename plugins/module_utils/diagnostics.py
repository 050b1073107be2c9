# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Post-mortem material of a process taken before it is stopped, and the private JSON file it is written to."""

from __future__ import annotations

import json
import os
import tempfile
import time

from ansible_collections.opsguard.anqicms.plugins.module_utils import procfs, sockets
from ansible_collections.opsguard.anqicms.plugins.module_utils.procfs import PROC, ProcessError


def collect_diagnostics(ident: procfs.Identity, tree: list, proc: str = PROC, max_fds: int = 2000) -> dict:
    """Memory status, threads, file descriptors, connections, limits and cgroups of a process (never its environment)."""
    base = os.path.join(proc, str(ident.pid))
    threads = []
    try:
        for tid in sorted(os.listdir(base + '/task'), key=int)[:max_fds]:
            try:
                st = procfs.parse_stat(procfs.read('%s/task/%s/stat' % (base, tid)))
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
        connections = [e for e in sockets.tcp_table(None, ident.pid, None, proc) if e['inode'] in inodes]
    except ProcessError:
        connections = []
    try:
        limits = procfs.read(base + '/limits').splitlines()
    except (IOError, OSError):
        limits = []
    try:
        cgroup = procfs.read(base + '/cgroup').splitlines()
    except (IOError, OSError):
        cgroup = []
    oom = {}
    for key in ('oom_score', 'oom_score_adj'):
        try:
            oom[key] = int(procfs.read('%s/%s' % (base, key)).strip())
        except (IOError, OSError, ValueError):
            continue
    return {
        'collected_at': time.time(),
        'identity': ident.as_dict(proc),
        'cmdline': procfs.read_cmdline(ident.pid, proc),
        'status': procfs.read_fields(base + '/status'),
        'smaps_rollup': procfs.read_fields(base + '/smaps_rollup'),
        'threads': threads,
        'fd_count': len(names),
        'fds': fds,
        'connections': connections,
        'limits': limits,
        'cgroup': cgroup,
        'oom': oom,
        'meminfo': procfs.read_fields(os.path.join(proc, 'meminfo')),
        'tree': [dict(m.as_dict(proc), rss_bytes=procfs.rss_bytes(m.pid, proc)) for m in tree],
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
