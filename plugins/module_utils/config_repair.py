# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Before a start: is config.json one AnQiCMS can start with, and if not, which last-good copy replaces it.

AnQiCMS rewrites its config.json with ``O_TRUNC`` and no fsync; a kill during that write leaves the file empty or
cut short and the instance exits at start. Two sources of a last-good copy exist: the copy kept (``state=kept`` of
the module anqicms_config_repair, taken while the instance ran) and the ``config.json`` in the files archive of site 1
of a backup of opsguard.anqicms.backup, used only after the whole backup verified. Every file read here is untrusted:
regular files only (never through a symbolic link, never a FIFO or device), at most 1 MiB, strict JSON of the shape
AnQiCMS decodes, holding a database name, and (when the instance's port is known) the instance's own port.

Nothing here writes: :func:`choose_source` decides, the module writes.
"""

from __future__ import annotations

import datetime
import errno
import os
import stat
import tarfile
import typing as t

from ansible_collections.opsguard.anqicms.plugins.module_utils.anqicms_config import (
    MAX_FILE_BYTES,
    ConfigError,
    check_document,
    decode_config,
    parse_config,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import BackupError, list_backups, verify_backup

CONFIG = 'config.json'
COPIES_DIR = '/var/lib/opsguard/config'


class RepairError(Exception):
    """A source that cannot be used, or a file that cannot be read; the message says why."""


def copy_name(directory: str) -> str:
    """File name of the kept copy of the instance installed in ``directory`` (as emergency_stop names its records)."""
    return directory.rstrip('/').lstrip('/').replace('/', '_') + '.json'


def read_regular(path: str, limit: int = MAX_FILE_BYTES, follow: bool = False) -> tuple[bytes, float]:
    """(content, mtime) of a regular file of at most ``limit`` bytes; RepairError otherwise.

    Without ``follow`` a symbolic link is refused (O_NOFOLLOW); a FIFO never blocks the read (O_NONBLOCK).
    """
    flags = os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0) | (0 if follow else getattr(os, 'O_NOFOLLOW', 0))
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise RepairError('%s does not exist' % path) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RepairError('%s is a symbolic link, which is not followed' % path) from None
        raise RepairError('%s cannot be opened (%s)' % (path, exc.strerror)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise RepairError('%s is not a regular file' % path)
    with os.fdopen(fd, 'rb') as handle:
        if st.st_size > limit:
            raise RepairError('%s has %d bytes, more than the %d a config.json may have' % (path, st.st_size, limit))
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise RepairError('%s grew beyond %d bytes while it was read' % (path, limit))
    return data, st.st_mtime


def start_problem(data: bytes, path: str = CONFIG) -> str | None:
    """Why AnQiCMS could not start with this config.json (None when it can decode it)."""
    try:
        text = decode_config(data, path)
        if not text.strip():
            return '%s is empty (a kill during the application\'s own truncating write leaves it so)' % path
        check_document(parse_config(text, path), path)
    except ConfigError as exc:
        return str(exc).split('; it was left untouched', maxsplit=1)[0]
    return None


def copy_problem(data: bytes, where: str, port: int | None = None) -> str | None:
    """Why ``data`` is no last-good copy of this instance (None when it is one)."""
    problem = start_problem(data, where)
    if problem:
        return problem
    doc = parse_config(decode_config(data, where), where)
    mysql = doc.get('mysql')
    if not isinstance(mysql, dict) or not isinstance(mysql.get('database'), str) or not mysql['database']:
        return '%s holds no mysql.database: it is not the configuration of an installed instance' % where
    server = doc.get('server')
    other = server.get('port') if isinstance(server, dict) else None
    if port is not None and other is not None and other != port:
        return '%s is for port %s, not port %d of this instance' % (where, other, port)
    return None


def backup_config(backup_dir: str, directory: str) -> bytes:
    """The config.json of site 1 in a backup of the instance installed in ``directory``, after the backup verified.

    RepairError when the backup does not verify (manifest schema, size and sha256 of every artifact), is of another
    directory, or holds no regular config.json of at most 1 MiB.
    """
    try:
        manifest = verify_backup(backup_dir)
    except (BackupError, OSError, ValueError) as exc:
        raise RepairError(str(exc)) from None
    site = next((s for s in manifest['sites'] if s.get('id') == 1), None)
    if site is None or site.get('root') != directory:
        raise RepairError('backup %s is not of %s (site 1 root %s)' % (backup_dir, directory, site.get('root') if site else 'missing'))
    name = site.get('files_artifact')
    art = next((a for a in manifest['artifacts'] if a.get('name') == name), None) if name else None
    if art is None or CONFIG not in (art.get('items') or []):
        raise RepairError('backup %s holds no config.json of site 1' % backup_dir)
    path = os.path.join(backup_dir, name)
    try:
        with tarfile.open(path, mode='r:gz') as archive:
            member = None
            for entry in archive:
                if entry.name in (CONFIG, './' + CONFIG):
                    member = entry
                    break
            if member is None:
                raise RepairError('backup %s: %s holds no config.json' % (backup_dir, name))
            if not member.isreg():
                raise RepairError('backup %s: config.json in %s is not a regular file' % (backup_dir, name))
            if member.size > MAX_FILE_BYTES:
                raise RepairError('backup %s: config.json in %s has %d bytes, more than %d' % (backup_dir, name, member.size, MAX_FILE_BYTES))
            handle = archive.extractfile(member)
            data = handle.read(MAX_FILE_BYTES + 1) if handle else b''
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise RepairError('backup %s: %s cannot be read (%s)' % (backup_dir, name, exc)) from None
    return data


def sources(directory: str, instance: str, backup_dest: str | None, copies_dir: str | None) -> list[dict[str, t.Any]]:
    """Every candidate last-good copy, newest first: the kept copy (by its time) and the complete backups (by their id).

    Each is ``{'kind': 'kept' | 'backup', 'where': path, 'id': backup id or None, 'time': datetime, 'load': callable}``;
    nothing is read yet beyond the backups' manifests (listing).
    """
    found: list[dict[str, t.Any]] = []
    if copies_dir:
        path = os.path.join(copies_dir, copy_name(directory))
        try:
            st = os.lstat(path)
        except OSError:
            st = None
        if st is not None:
            when = datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc)
            found.append({'kind': 'kept', 'where': path, 'id': None, 'time': when,
                          'load': lambda path=path: read_regular(path)[0]})
    if backup_dest and instance:
        instance_dir = os.path.join(backup_dest, instance)
        try:
            good_ones = [] if os.path.islink(instance_dir) else list_backups(instance_dir)['good']
        except OSError:
            good_ones = []
        if good_ones:
            for good in good_ones:
                found.append({'kind': 'backup', 'where': good['path'], 'id': good['id'], 'time': good['time'],
                              'load': lambda where=good['path']: backup_config(where, directory)})
    # Newest first; at the same time the kept copy first (it is a copy of the file itself).
    found.sort(key=lambda s: (s['time'], s['kind'] == 'kept'), reverse=True)
    return found


def choose_source(candidates: t.Iterable[t.Mapping[str, t.Any]], port: int | None = None) -> tuple[dict | None, list[str]]:
    """The newest candidate that loads and is a last-good copy: (``{kind, where, id, time, data}`` or None, why each
    newer one was passed over). Candidates are tried in the order given (newest first); loading stops at the first good one.
    """
    passed: list[str] = []
    for cand in candidates:
        where = str(cand.get('where'))
        label = '%s %s' % ('kept copy' if cand.get('kind') == 'kept' else 'backup', where)
        try:
            data = cand['load']()
        except RepairError as exc:
            passed.append('%s: %s' % (label, exc))
            continue
        if not isinstance(data, bytes):
            passed.append('%s: no content' % label)
            continue
        problem = copy_problem(data, label, port)
        if problem:
            passed.append(problem)
            continue
        chosen = {k: cand.get(k) for k in ('kind', 'where', 'id', 'time')}
        chosen['data'] = data
        return chosen, passed
    return None, passed
