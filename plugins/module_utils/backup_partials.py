# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Partial backup directories: an owner record and a lock, so that leftovers of a killed backup can be proven dead."""

from __future__ import annotations

import json
import os
import shutil

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import PARTIAL_PREFIX, hostname

OWNER_FILE = '.owner'


def _boot_id(proc: str = '/proc') -> str:
    try:
        with open(os.path.join(proc, 'sys/kernel/random/boot_id'), 'r') as handle:
            return handle.read(64).strip()
    except OSError:
        return ''


def process_start(pid: int, proc: str = '/proc') -> int | None:
    """Start time of process ``pid`` (clock ticks after boot, /proc/PID/stat field 22), None when it does not exist."""
    try:
        with open('%s/%d/stat' % (proc, pid), 'rb') as handle:
            data = handle.read(4096)
        return int(data[data.rindex(b')') + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def owner_record(proc: str = '/proc') -> dict:
    """Who writes a partial directory: this process (PID, its start time), this boot, this host."""
    pid = os.getpid()
    return {'pid': pid, 'start': process_start(pid, proc), 'boot_id': _boot_id(proc), 'host': hostname()}


def claim_partial(path: str) -> int:
    """Create the partial directory ``path`` (0700), lock it (flock) and write its owner record into it.

    Returns the locked descriptor of the directory: keep it open until the directory is renamed or removed.
    The kernel drops the lock when this process dies, however it dies.
    """
    import fcntl  # pylint: disable=import-outside-toplevel

    os.mkdir(path, 0o700)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        # Blocking: a cleaner that probes this directory holds the lock only to read the (still absent) record.
        fcntl.flock(fd, fcntl.LOCK_EX)
        rec = os.open(OWNER_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
        with os.fdopen(rec, 'w') as handle:
            handle.write(json.dumps(owner_record()) + '\n')
    except BaseException:
        os.close(fd)
        raise
    return fd


def release_partial(fd: int) -> None:
    """Remove the owner record from a claimed partial directory (before its manifest is written)."""
    try:
        os.unlink(OWNER_FILE, dir_fd=fd)
    except FileNotFoundError:
        pass


def _owner_is_dead(fd: int, proc: str = '/proc') -> tuple:
    """(dead, reason) from the owner record of the locked partial directory ``fd``; dead only when proven."""
    try:
        rec = os.open(OWNER_FILE, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
        with os.fdopen(rec, 'rb') as handle:
            data = json.loads(handle.read(4096).decode('utf-8'))
    except FileNotFoundError:
        return False, 'it has no owner record (written by an older version, or its backup was killed right after creating it)'
    except (OSError, ValueError, RecursionError) as exc:
        return False, 'its owner record cannot be read (%s)' % exc
    if not isinstance(data, dict):
        return False, 'its owner record is malformed'
    pid, start, boot, host = data.get('pid'), data.get('start'), data.get('boot_id'), data.get('host')
    if isinstance(pid, bool) or not isinstance(pid, int) or pid < 1 or not isinstance(boot, str) or not isinstance(host, str) \
            or not (start is None or (isinstance(start, int) and not isinstance(start, bool))):
        return False, 'its owner record is malformed'
    if host != hostname():
        return False, 'its owner record names host %s, not this one' % host
    current_boot = _boot_id(proc)
    if boot and current_boot and boot != current_boot:
        return True, 'its owner (PID %d) ran before the last reboot' % pid
    now_start = process_start(pid, proc)
    if now_start is None:
        return True, 'its owner PID %d no longer exists' % pid
    if start is not None and now_start != start:
        return True, 'its owner PID %d no longer exists (the PID belongs to a newer process)' % pid
    return False, 'its owner PID %d still runs' % pid


def clean_stale_partials(instance_dir: str, check_mode: bool = False, proc: str = '/proc') -> dict:
    """Remove the ``.partial-*`` directories of ``instance_dir`` whose backup is proven dead.

    Proven dead: nobody holds the directory's lock (a running backup holds it from creation to rename) *and*
    its owner record names a process of this host that no longer exists (other boot, PID gone, PID reused).
    Anything else is left alone and reported with the reason. In check mode nothing is removed.
    Returns {'removed': [names], 'left': [{'name', 'reason'}]}.
    """
    import fcntl  # pylint: disable=import-outside-toplevel

    removed, left = [], []
    try:
        names = sorted(n for n in os.listdir(instance_dir) if n.startswith(PARTIAL_PREFIX))
    except FileNotFoundError:
        names = []
    for name in names:
        path = os.path.join(instance_dir, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            left.append({'name': name, 'reason': 'it is not a directory (or is a symlink): left alone'})
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                left.append({'name': name, 'reason': 'a backup is still writing it (it holds its lock)'})
                continue
            dead, reason = _owner_is_dead(fd, proc)
            if not dead:
                left.append({'name': name, 'reason': reason})
                continue
            if not check_mode:
                try:
                    shutil.rmtree(path)
                except OSError as exc:
                    left.append({'name': name, 'reason': '%s, but removing it failed: %s' % (reason, exc)})
                    continue
            removed.append(name)
        finally:
            os.close(fd)
    return {'removed': removed, 'left': left}
