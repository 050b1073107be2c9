# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup store: layout, manifests and checksums of AnQiCMS backups (retention: backup_retention.py).

A backup is a directory ``<dest>/<instance>/<id>`` holding one gzipped SQL dump and one
tar.gz of kept files per site, plus ``manifest.json`` written last. It is built under the
hidden name ``.partial-<id>`` and renamed into place only when complete, so a directory with
the final name is always whole. Every byte is hashed while it is written; nothing is read
into memory whole. The manifest is untrusted input when it is read back (:func:`validate_manifest`).
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import os
import re
import socket
import stat

FORMAT = 'opsguard.anqicms.backup/1'
MANIFEST = 'manifest.json'
PARTIAL_PREFIX = '.partial-'
ID_RE = re.compile(r'^\d{8}T\d{6}(?:\d{6})?Z$')
CHUNK = 1024 * 1024
TRAILER = b'-- Dump completed'
# What a site root keeps (AnQiCMS: config.json, template/, public/, data/, cache/.history); the rest is regenerable.
KEEP_ITEMS = ('config.json', 'template', 'public', 'data', 'cache/.history')
GZIP_LEVEL = 6


class BackupError(Exception):
    """A refusal or failure with an operator-facing message."""


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def iso(ts: datetime.datetime) -> str:
    return ts.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def new_backup_id(ts: datetime.datetime) -> str:
    return ts.strftime('%Y%m%dT%H%M%S%fZ')


def id_time(backup_id: str) -> datetime.datetime:
    fmt = '%Y%m%dT%H%M%S%fZ' if len(backup_id) > 16 else '%Y%m%dT%H%M%SZ'
    return datetime.datetime.strptime(backup_id, fmt).replace(tzinfo=datetime.timezone.utc)


def sha256_file(path: str) -> tuple:
    """(size, sha256 hex) of a file, streamed."""
    digest = hashlib.sha256()
    size = 0
    with open(path, 'rb') as handle:
        while True:
            block = handle.read(CHUNK)
            if not block:
                break
            size += len(block)
            digest.update(block)
    return size, digest.hexdigest()


class HashingWriter(object):
    """A new private file (0600, never an existing one) that hashes and counts what is written."""

    def __init__(self, path: str) -> None:
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, 'wb')
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._file.write(data)
        self._digest.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def abort(self) -> None:
        if not self._file.closed:
            try:
                self._file.close()
            except OSError:
                pass

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


def hostname() -> str:
    return socket.gethostname()


def disk_error(exc: OSError, where: str) -> BackupError:
    if exc.errno == errno.ENOSPC:
        return BackupError('the backup target %s ran out of space (%s); the partial backup was removed: free space or '
                           'choose another dest' % (where, exc.strerror))
    if exc.errno == errno.EDQUOT:
        return BackupError('the disk quota of %s is exhausted; the partial backup was removed' % where)
    return BackupError('writing the backup under %s failed: %s' % (where, exc))


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(directory: str, manifest: dict) -> dict:
    path = os.path.join(directory, MANIFEST)
    writer = HashingWriter(path)
    try:
        writer.write(json.dumps(manifest, indent=2, sort_keys=True).encode('utf-8') + b'\n')
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return {'size': writer.size, 'sha256': writer.sha256}


MANIFEST_MAX = 16 * 1024 * 1024
SHA256_RE = re.compile(r'[0-9a-f]{64}')
ARTIFACT_NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{0,254}')
MAX_SIZE = 2 ** 63 - 1
MAX_SITES = 100000


class ManifestError(BackupError):
    """A manifest that does not have the schema this module writes."""


def show_value(value) -> str:
    """``repr(value)`` cut to 80 characters, for messages that quote untrusted input."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + '...'


def _type_name(value) -> str:
    return {dict: 'an object', list: 'a list', str: 'a string', bool: 'a boolean', int: 'an integer', float: 'a number',
            type(None): 'null'}.get(type(value), type(value).__name__)


def _need(ok: bool, field: str, expected: str, value) -> None:
    if not ok:
        raise ManifestError('manifest field %s must be %s, got %s %s' % (field, expected, _type_name(value), show_value(value)))


def _is_int(value, low: int = 0, high: int = MAX_SIZE) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_name(value, limit: int = 255) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and '\0' not in value


def _is_root(value) -> bool:
    return (_is_name(value, 4096) and value.startswith('/') and value != '/' and os.path.normpath(value) == value
            and not value.startswith('//') and '\n' not in value)


def _is_database(value) -> bool:
    # MariaDB: at most 64 characters, no '/', '\\' or '.', no trailing space.
    return (_is_name(value, 64) and not any(c in value for c in '/\\.') and not value.endswith(' ')
            and value.isprintable())


def validate_manifest(data) -> None:
    """Check every field restore and retention use, with its type and range. Raises ManifestError naming the field.

    The manifest is untrusted input: it decides which files are read, which directories are written and
    which databases are replaced, so nothing outside this schema is accepted.
    """
    _need(isinstance(data, dict), 'at the top level', 'an object', data)
    _need(data.get('format') == FORMAT, 'format', repr(FORMAT), data.get('format'))
    _need(isinstance(data.get('id'), str) and bool(ID_RE.fullmatch(data['id'])), 'id',
          'a backup ID of the form YYYYmmddTHHMMSS[ffffff]Z', data.get('id'))
    instance = data.get('instance')
    _need(_is_name(instance) and '/' not in instance and not instance.startswith('.'), 'instance',
          'a non-empty directory name (no "/", not starting with ".")', instance)
    _need(data.get('complete') is True, 'complete', 'true (the backup was finished)', data.get('complete'))
    db_server = data.get('db_server')
    _need(db_server is None or isinstance(db_server, dict), 'db_server', 'an object or null', db_server)
    if isinstance(db_server, dict):
        _need(db_server.get('version') is None or isinstance(db_server['version'], str), 'db_server.version',
              'a string or null', db_server.get('version'))

    artifacts = data.get('artifacts')
    _need(isinstance(artifacts, list), 'artifacts', 'a list', artifacts)
    kinds: dict = {}
    for index, art in enumerate(artifacts):
        field = 'artifacts[%d]' % index
        _need(isinstance(art, dict), field, 'an object', art)
        name = art.get('name')
        _need(isinstance(name, str) and bool(ARTIFACT_NAME_RE.fullmatch(name)) and name != MANIFEST, field + '.name',
              'a plain file name in the backup directory (letters, digits, ".", "_", "-"; no "/")', name)
        _need(name not in kinds, field + '.name', 'unique', name)
        _need(_is_int(art.get('size')), field + '.size', 'an integer from 0 to 2**63-1 (bytes)', art.get('size'))
        _need(isinstance(art.get('sha256'), str) and bool(SHA256_RE.fullmatch(art['sha256'])), field + '.sha256',
              '64 lower-case hex digits', art.get('sha256'))
        kind = art.get('kind')
        _need(kind in (None, 'db', 'files'), field + '.kind', '"db", "files" or absent', kind)
        _need(art.get('site') is None or _is_int(art['site'], 1), field + '.site', 'a positive integer or absent', art.get('site'))
        _need(art.get('sql_size') is None or _is_int(art['sql_size']), field + '.sql_size', 'an integer >= 0 or absent',
              art.get('sql_size'))
        items = art.get('items')
        _need(items is None or (isinstance(items, list) and all(i in KEEP_ITEMS for i in items) and len(set(items)) == len(items)),
              field + '.items', 'a list of distinct kept items %s' % (list(KEEP_ITEMS),), items)
        kinds[name] = kind

    sites = data.get('sites')
    _need(isinstance(sites, list) and 0 < len(sites) <= MAX_SITES, 'sites', 'a non-empty list', sites)
    ids: list = []
    for index, site in enumerate(sites):
        field = 'sites[%d]' % index
        _need(isinstance(site, dict), field, 'an object', site)
        _need(_is_int(site.get('id'), 1), field + '.id', 'a positive integer', site.get('id'))
        _need(site['id'] not in ids, field + '.id', 'unique', site['id'])
        ids.append(site['id'])
        _need(site.get('name') is None or isinstance(site['name'], str), field + '.name', 'a string', site.get('name'))
        _need(_is_database(site.get('database')), field + '.database',
              'a database name (1-64 printable characters, no "/", "\\" or ".")', site.get('database'))
        _need(_is_root(site.get('root')), field + '.root', 'an absolute, normalised directory path other than "/" '
              '(no "..", no "//")', site.get('root'))
        for key, kind in (('db_artifact', 'db'), ('files_artifact', 'files')):
            ref = site.get(key)
            _need(ref is None or (isinstance(ref, str) and ref in kinds and kinds[ref] in (None, kind)), field + '.' + key,
                  'null or the name of a %s artifact listed in artifacts' % kind, ref)
        shared = site.get('db_shared_with')
        _need(shared is None or (_is_int(shared, 1) and shared in ids[:-1]), field + '.db_shared_with',
              'null or the id of a site listed before it', shared)
        tables = site.get('tables')
        _need(tables is None or isinstance(tables, dict), field + '.tables', 'an object or null', tables)
        for table, stats in (tables or {}).items():
            tfield = '%s.tables[%s]' % (field, show_value(table))
            _need(_is_name(table, 64), tfield, 'keyed by a table name of 1-64 characters', table)
            _need(isinstance(stats, dict) and set(stats) <= {'rows', 'checksum'}, tfield, 'an object with rows and checksum',
                  stats)
            _need(_is_int(stats.get('rows')), tfield + '.rows', 'an integer >= 0', stats.get('rows'))
            _need(stats.get('checksum') is None or isinstance(stats['checksum'], str), tfield + '.checksum', 'a string or null',
                  stats.get('checksum'))


def _refuse_constant(name: str):
    raise ValueError('%s is not JSON' % name)


def read_manifest(directory: str) -> dict:
    """The manifest of a backup directory, after checking its whole schema (:func:`validate_manifest`).

    Only a regular file is read (never through a symlink, never a FIFO or device), at most MANIFEST_MAX bytes.
    """
    path = os.path.join(directory, MANIFEST)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_NONBLOCK', 0))
    except FileNotFoundError:
        raise BackupError('%s has no %s: it is not a complete backup' % (directory, MANIFEST)) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BackupError('%s is a symlink, not a manifest this module wrote: the backup %s is refused' % (path, directory)) from None
        raise BackupError('cannot read %s (%s): the backup %s is refused' % (path, exc.strerror, directory)) from None
    try:
        with os.fdopen(fd, 'rb') as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise BackupError('%s is not a regular file: the backup %s is refused' % (path, directory))
            if st.st_size > MANIFEST_MAX:
                raise BackupError('%s has %d bytes, more than a manifest can (%d): the backup %s is refused'
                                  % (path, st.st_size, MANIFEST_MAX, directory))
            raw = handle.read(MANIFEST_MAX + 1)
        data = json.loads(raw.decode('utf-8'), parse_constant=_refuse_constant)
    except OSError as exc:
        raise BackupError('cannot read %s (%s): the backup %s is refused' % (path, exc.strerror, directory)) from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BackupError('%s is not valid JSON (%s): the backup is damaged' % (path, str(exc)[:200])) from None
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        raise BackupError('%s is not a manifest of format %s' % (path, FORMAT))
    try:
        validate_manifest(data)
    except ManifestError as exc:
        raise BackupError('backup %s is refused: %s (the backup is damaged or was not written by opsguard.anqicms.backup)'
                          % (directory, exc)) from None
    if data['id'] != os.path.basename(os.path.normpath(directory)):
        raise BackupError('%s names backup %s but lies in directory %s' % (path, data['id'], directory))
    return data


def _hash_all(entries: list) -> list:
    return [sha256_file(entry[2])[1] for entry in entries]


def verify_backup(directory: str, checksums: bool = True) -> dict:
    """Check a backup directory against its manifest: every artifact present, same size and sha256.

    Returns the manifest. Raises BackupError naming every problem found.
    """
    manifest = read_manifest(directory)
    problems = []
    names = set()
    to_hash: list = []
    for art in manifest['artifacts']:
        name = art.get('name') if isinstance(art, dict) else None
        if not isinstance(name, str) or '/' in name or name.startswith('.') or name == MANIFEST:
            problems.append('artifact entry %r is malformed' % (art,))
            continue
        names.add(name)
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            problems.append('%s is missing' % name)
            continue
        if not os.path.isfile(path) or os.path.islink(path):
            problems.append('%s is not a regular file' % name)
            continue
        if st.st_size != art.get('size'):
            problems.append('%s has %d bytes, the manifest says %s' % (name, st.st_size, art.get('size')))
            continue
        if checksums:
            to_hash.append((st.st_size, name, path, art.get('sha256')))
    # Two hashing threads (hashlib releases the GIL on large blocks), largest files spread over both.
    to_hash.sort(reverse=True)
    groups: list = [[], []]
    for index, entry in enumerate(to_hash):
        groups[index % 2].append(entry)
    for group, digests in zip(groups, in_parallel(*[(_hash_all, g) for g in groups])):
        for (_size, name, _path, expected), digest in zip(group, digests):
            if digest != expected:
                problems.append('%s has sha256 %s, the manifest says %s' % (name, digest, expected))
    for site in manifest['sites']:
        for key in ('db_artifact', 'files_artifact'):
            ref = site.get(key)
            if ref is not None and ref not in names:
                problems.append('site %s refers to %s, which the manifest does not list' % (site.get('id'), ref))
    if problems:
        raise BackupError('backup %s failed verification: %s' % (directory, '; '.join(problems)))
    return manifest


def list_backups(instance_dir: str) -> dict:
    """Scan ``<dest>/<instance>``: good backups (newest first), bad ones and partial leftovers.

    Only real directories (never symlinks) named like a backup ID are looked at. ``good`` holds those whose
    manifest reads and says complete; ``bad`` those named like a backup whose manifest is missing, unreadable,
    incomplete or whose name is no valid time stamp (with the error, and the manifest's instance when known).
    Nothing is hashed here: see :func:`plan_retention` for the checksum check.
    """
    good, bad, partial = [], [], []
    try:
        entries = sorted(os.listdir(instance_dir))
    except FileNotFoundError:
        entries = []
    for name in entries:
        path = os.path.join(instance_dir, name)
        if name.startswith(PARTIAL_PREFIX):
            partial.append(path)
            continue
        if not ID_RE.match(name) or not os.path.isdir(path) or os.path.islink(path):
            continue
        try:
            when = id_time(name)
        except ValueError:
            bad.append({'id': name, 'path': path, 'instance': None,
                        'error': '%s is named like a backup but %s is no valid time stamp' % (path, name)})
            continue
        try:
            manifest = read_manifest(path)
        except BackupError as exc:
            bad.append({'id': name, 'path': path, 'instance': None, 'error': str(exc)})
            continue
        except (OSError, ValueError, RecursionError) as exc:
            bad.append({'id': name, 'path': path, 'instance': None, 'error': '%s cannot be read: %s' % (path, exc)})
            continue
        owner = manifest.get('instance')
        if manifest.get('complete') is not True:
            bad.append({'id': name, 'path': path, 'instance': owner,
                        'error': 'the manifest of %s does not say the backup is complete' % path})
            continue
        good.append({'id': name, 'path': path, 'time': when, 'instance': owner, 'complete': True})
    good.sort(key=lambda g: (g['time'], g['id']), reverse=True)
    return {'good': good, 'bad': bad, 'partial': partial}


def newest_backup_entry(instance_dir: str) -> str | None:
    """Name of the newest entry of ``instance_dir`` named like a backup ID (not a ``.partial-`` one), whatever it is.

    Raises BackupError for a name shaped like an ID that is no valid time: it cannot be ordered, so the newest is unknown.
    """
    try:
        names = [n for n in os.listdir(instance_dir) if ID_RE.fullmatch(n)]
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BackupError('cannot list the backups in %s: %s' % (instance_dir, exc.strerror)) from None
    dated = []
    for name in names:
        try:
            dated.append((id_time(name), name))
        except ValueError:
            raise BackupError('%s is named like a backup but %s is no valid time stamp, so the newest backup is unknown: '
                              'rename or remove it, or name the backup with backup_id' % (os.path.join(instance_dir, name), name)) from None
    return max(dated)[1] if dated else None


def find_backup(dest: str, instance: str, backup_id: str) -> str:
    """Directory of backup ``backup_id``, or of the newest backup for 'latest'.

    'latest' is the newest backup by ID, never an older one in its place: if the newest is damaged (no manifest,
    an invalid or incomplete one, another instance's, not a directory), this fails and names it. Its checksums are
    checked by :func:`verify_backup` afterwards.
    """
    instance_dir = os.path.join(dest, instance)
    if backup_id == 'latest':
        newest = newest_backup_entry(instance_dir)
        if newest is None:
            raise BackupError('no complete backup of instance %s under %s' % (instance, instance_dir))
        path = os.path.join(instance_dir, newest)
        hint = ('backup_id=latest restores only the newest backup: repair or remove it, or name an older one with backup_id '
                '(nothing was changed)')
        if os.path.islink(path) or not os.path.isdir(path):
            raise BackupError('the newest backup of instance %s, %s, is not a directory: %s' % (instance, path, hint))
        try:
            manifest = read_manifest(path)
        except BackupError as exc:
            raise BackupError('the newest backup of instance %s, %s, is damaged (%s); %s' % (instance, path, exc, hint)) from None
        if manifest['instance'] != instance:
            raise BackupError('the newest backup under %s, %s, is of instance %s, not %s; %s'
                              % (instance_dir, path, manifest['instance'], instance, hint))
        return path
    if not isinstance(backup_id, str) or not ID_RE.fullmatch(backup_id):
        raise BackupError("backup_id %s is neither 'latest' nor of the form YYYYmmddTHHMMSS[ffffff]Z" % show_value(backup_id))
    path = os.path.join(instance_dir, backup_id)
    if not os.path.isdir(path):
        raise BackupError('backup %s of instance %s does not exist under %s' % (backup_id, instance, instance_dir))
    return path


def in_parallel(*calls) -> list:
    """Run (func, args...) tuples in threads (zlib, hashing and I/O release the GIL); return their results.

    Waits for every call; the first exception (in call order) is raised after all have finished, so no
    thread still writes when the caller cleans up.
    """
    import threading  # pylint: disable=import-outside-toplevel

    results: list = [None] * len(calls)
    errors: list = [None] * len(calls)

    def runner(index: int, func, args) -> None:
        try:
            results[index] = func(*args)
        except BaseException as exc:  # pylint: disable=broad-except
            errors[index] = exc

    threads = []
    for index, call in enumerate(calls[1:], start=1):
        thread = threading.Thread(target=runner, args=(index, call[0], call[1:]))
        thread.start()
        threads.append(thread)
    if calls:
        runner(0, calls[0][0], calls[0][1:])
    for thread in threads:
        thread.join()
    for exc in errors:
        if exc is not None:
            raise exc
    return results
