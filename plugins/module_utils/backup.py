# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups of AnQiCMS instances: streamed dumps and archives, manifests, verification, retention.

A backup is a directory ``<dest>/<instance>/<id>`` holding one gzipped SQL dump and one
tar.gz of kept files per site, plus ``manifest.json`` written last. It is built under the
hidden name ``.partial-<id>`` and renamed into place only when complete, so a directory with
the final name is always whole. Every byte is hashed while it is written; nothing is read
into memory whole.
"""

from __future__ import annotations

import datetime
import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import stat
import subprocess
import tarfile
import tempfile
import time
import zlib

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


def _stderr_text(handle) -> str:
    handle.seek(0)
    return handle.read(4000).decode('utf-8', 'replace').strip()


def stream_to_gzip(cmd: list, dest: str, timeout: float = 3600.0, ok_codes: tuple = (0,), cwd: str | None = None,
                   pass_fds: tuple = ()) -> dict:
    """Stream ``cmd``'s stdout through gzip into ``dest`` (0600, new file), hashing while writing.

    Compression happens here, not in a shell pipe, so the command's own exit status and every write
    are each checked. Returns size, sha256, raw size, the last 256 raw bytes and the exit status.
    """
    writer = HashingWriter(dest)
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    tail = b''
    raw = 0
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, cwd=cwd, pass_fds=pass_fds)
        try:
            stream = proc.stdout
            while True:
                block = stream.read1(CHUNK) if hasattr(stream, 'read1') else stream.read(CHUNK)
                if not block:
                    break
                raw += len(block)
                tail = (tail + block[-256:])[-256:]
                writer.write(compressor.compress(block))
                if time.monotonic() > deadline:
                    raise BackupError('%s did not finish within %ss' % (os.path.basename(cmd[0]), timeout))
            writer.write(compressor.flush())
            writer.close()
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            writer.abort()
            raise
        finally:
            if proc.stdout:
                proc.stdout.close()
        stderr = _stderr_text(err)
        if rc not in ok_codes:
            raise BackupError('%s exited with status %d: %s' % (os.path.basename(cmd[0]), rc, stderr))
    return {'size': writer.size, 'sha256': writer.sha256, 'raw_size': raw, 'tail': tail, 'rc': rc, 'stderr': stderr}


def dump_database(dump_cmd: list, dest: str, timeout: float = 3600.0, pass_fds: tuple = ()) -> dict:
    """Dump through gzip into ``dest``; check the dump's exit status and its completion trailer."""
    info = stream_to_gzip(dump_cmd, dest, timeout=timeout, pass_fds=pass_fds)
    last = info['tail'].rstrip(b'\n').rsplit(b'\n', 1)[-1]
    if not last.startswith(TRAILER):
        raise BackupError('the dump has no completion trailer ("-- Dump completed"): it was cut short after %d bytes'
                          % info['raw_size'])
    return {'size': info['size'], 'sha256': info['sha256'], 'raw_size': info['raw_size']}


def load_dump(load_cmd: list, source: str, timeout: float = 3600.0, prefix: bytes = b'', pass_fds: tuple = ()) -> int:
    """Stream ``prefix`` and then a gzipped dump into ``load_cmd``'s stdin; return the dump's uncompressed size."""
    decompressor = zlib.decompressobj(31)
    tail = b''
    raw = 0
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryFile() as err, open(source, 'rb') as src:
        proc = subprocess.Popen(load_cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, pass_fds=pass_fds)
        try:
            if prefix:
                proc.stdin.write(prefix)
            while True:
                block = src.read(CHUNK)
                if not block:
                    break
                data = decompressor.decompress(block)
                if data:
                    raw += len(data)
                    tail = (tail + data[-256:])[-256:]
                    proc.stdin.write(data)
                if time.monotonic() > deadline:
                    raise BackupError('loading %s did not finish within %ss' % (os.path.basename(source), timeout))
            data = decompressor.flush()
            if data:
                raw += len(data)
                tail = (tail + data[-256:])[-256:]
                proc.stdin.write(data)
            if not decompressor.eof:
                raise BackupError('%s is a truncated gzip stream' % os.path.basename(source))
            proc.stdin.close()
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except BrokenPipeError:
            rc = proc.wait()
            raise BackupError('the database client stopped reading %s (exit status %s): %s'
                              % (os.path.basename(source), rc, _stderr_text(err))) from None
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
        if rc != 0:
            raise BackupError('loading %s failed (exit status %d): %s' % (os.path.basename(source), rc, _stderr_text(err)))
    if not tail.rstrip(b'\n').rsplit(b'\n', 1)[-1].startswith(TRAILER):
        raise BackupError('%s has no completion trailer' % os.path.basename(source))
    return raw


def kept_items(root: str) -> list:
    """The KEEP_ITEMS present under ``root``."""
    return [item for item in KEEP_ITEMS if os.path.lexists(os.path.join(root, item))]


def archive_files(root: str, dest: str, tar: str | None = None) -> dict:
    """tar.gz of the kept items of a site root, hashed while written. Symlinks are stored, not followed.

    GNU tar (its own process) reads the files while this process compresses and hashes; without tar,
    Python's tarfile does both. Files that changed while they were read (a hot backup) are reported.
    """
    items = kept_items(root)
    tar = tar if tar is not None else shutil.which('tar')
    if tar and items:
        cmd = [tar, '--create', '--file=-', '--format=pax', '--'] + items
        info = stream_to_gzip(cmd, dest, ok_codes=(0, 1), cwd=root)
        changed = info['stderr'] if info['rc'] == 1 else ''
        return {'size': info['size'], 'sha256': info['sha256'], 'items': items, 'changed_while_read': changed}
    writer = HashingWriter(dest)
    try:
        with tarfile.open(fileobj=writer, mode='w:gz', compresslevel=GZIP_LEVEL, format=tarfile.PAX_FORMAT) as archive:
            for item in items:
                archive.add(os.path.join(root, item), arcname=item, recursive=True)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return {'size': writer.size, 'sha256': writer.sha256, 'items': items, 'changed_while_read': ''}


def check_member(member: tarfile.TarInfo) -> None:
    """Refuse archive members that could land outside the extraction directory."""
    name = member.name
    parts = name.split('/')
    if name.startswith('/') or '..' in parts or not any(name == i or name.startswith(i + '/') for i in KEEP_ITEMS):
        raise BackupError('archive member %r is outside the kept items; the archive is not one this module wrote' % name)
    if member.isdev() or member.isfifo():
        raise BackupError('archive member %r is a device or FIFO; refusing it' % name)
    if member.islnk():
        target = member.linkname
        if target.startswith('/') or '..' in target.split('/'):
            raise BackupError('hard link %r points outside the archive (%r)' % (name, target))


def extract_files(archive: str, dest: str) -> list:
    """Extract a files archive into the empty directory ``dest``; return the top-level items."""
    with tarfile.open(archive, mode='r:gz') as tar:
        members = tar.getmembers()
        for member in members:
            check_member(member)
        if hasattr(tarfile, 'data_filter'):
            try:
                tar.extractall(dest, members=members, filter='data')  # pylint: disable=unexpected-keyword-arg
            except tarfile.FilterError as exc:  # pylint: disable=no-member
                raise BackupError('refusing archive %s: %s' % (os.path.basename(archive), exc)) from None
        else:
            for member in members:
                if member.issym() and (member.linkname.startswith('/') or '..' in member.linkname.split('/')):
                    raise BackupError('symlink %r points outside the archive (%r)' % (member.name, member.linkname))
            tar.extractall(dest, members=members)  # nosec - members checked above
    return [item for item in KEEP_ITEMS if os.path.lexists(os.path.join(dest, item))]


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


# Bounds of the retention options: any value outside is refused before any work.
MAX_KEEP = 100000
MAX_KEEP_DAYS = 36500.0


def retention_problems(keep, keep_days) -> list:
    """Why ``keep``/``keep_days`` are unusable (empty list when they are fine). NaN, infinities, bools refused."""
    problems = []
    if keep is not None:
        if isinstance(keep, bool) or not isinstance(keep, int):
            problems.append('keep must be an integer from 1 to %d; got %r' % (MAX_KEEP, keep))
        elif not 1 <= keep <= MAX_KEEP:
            problems.append('keep must be from 1 to %d (the newest good backup is never deleted); got %d' % (MAX_KEEP, keep))
    if keep_days is not None:
        if isinstance(keep_days, bool) or not isinstance(keep_days, (int, float)):
            problems.append('keep_days must be a number of days from 0 to %d; got %r' % (MAX_KEEP_DAYS, keep_days))
        elif not math.isfinite(keep_days):
            problems.append('keep_days must be a finite number of days from 0 to %d; got %s' % (MAX_KEEP_DAYS, keep_days))
        elif not 0 <= keep_days <= MAX_KEEP_DAYS:
            problems.append('keep_days must be from 0 to %d days; got %s' % (MAX_KEEP_DAYS, keep_days))
    return problems


def check_backup(entry: dict) -> str | None:
    """None when the backup ``entry`` passes verification with checksums, else what is wrong with it."""
    try:
        verify_backup(entry['path'], checksums=True)
    except BackupError as exc:
        return str(exc)
    except (OSError, ValueError, RecursionError) as exc:
        return 'backup %s cannot be read: %s' % (entry['path'], exc)
    return None


def plan_retention(good: list, keep: int | None, keep_days: float | None, now: datetime.datetime, check=check_backup) -> dict:
    """What retention does with ``good`` (complete backups of one instance, newest first).

    Walking from the newest: until ``keep`` backups (1 with only ``keep_days``) that pass ``check`` (sha256 of
    every artifact against the manifest) have been kept, each backup is checked; one that passes is kept and
    counted, one that fails is damaged. After that, a backup younger than ``keep_days`` is kept as it is (not
    counted, not checked); any other is checked: one that passes expires, one that fails is damaged. A damaged
    backup is never counted as kept and never deleted: it is reported. An entry with ``trusted`` (the backup this
    run just wrote and hashed) is not checked again.

    Returns {'kept', 'expired', 'damaged' (entries with 'error'), 'checked' (entries that were checked)}.
    """
    problems = retention_problems(keep, keep_days)
    if problems:
        raise BackupError('; '.join(problems))
    plan: dict = {'kept': [], 'expired': [], 'damaged': [], 'checked': []}
    if keep is None and keep_days is None:
        plan['kept'] = list(good)
        return plan
    need = keep if keep is not None else 1
    counted = 0
    for entry in good:
        young = keep_days is not None and (now - entry['time']).total_seconds() < keep_days * 86400.0
        if counted >= need and young:
            plan['kept'].append(entry)
            continue
        error = None
        if not entry.get('trusted'):
            plan['checked'].append(entry)
            error = check(entry)
        if error:
            plan['damaged'].append(dict(entry, error=error))
        elif counted < need:
            counted += 1
            plan['kept'].append(entry)
        else:
            plan['expired'].append(entry)
    return plan


def select_expired(good: list, keep: int | None, keep_days: float | None, now: datetime.datetime) -> list:
    """Backups (from ``good``, newest first) that the retention rules remove, every backup taken as intact.

    A backup stays when it is among the ``keep`` newest, or younger than ``keep_days``; with only
    one rule given, only that rule applies. The newest backup always stays.
    """
    return plan_retention(good, keep, keep_days, now, check=lambda entry: None)['expired']


def apply_retention(instance_dir: str, instance: str, keep: int | None, keep_days: float | None,
                    now: datetime.datetime, check_mode: bool = False, new_id: str | None = None) -> dict:
    """Delete expired, intact backups of ``instance``; never anything else. See :func:`plan_retention`.

    ``new_id`` is the backup this run writes: trusted (just hashed while written); in check mode, where it
    does not exist yet, it is counted as if it did, so check mode names exactly what the real run removes.
    Returns {'removed': ids, 'damaged': [{'id', 'error'}], 'checked': count, 'checked_bytes', 'check_seconds',
    'errors': [messages of removals that failed]}.
    """
    started = time.monotonic()
    listing = list_backups(instance_dir)
    good = [g for g in listing['good'] if g['instance'] == instance]
    if new_id is not None:
        if check_mode and not any(g['id'] == new_id for g in good):
            good.append({'id': new_id, 'path': os.path.join(instance_dir, new_id), 'time': id_time(new_id),
                         'instance': instance, 'complete': True})
            good.sort(key=lambda g: (g['time'], g['id']), reverse=True)
        good = [dict(g, trusted=True) if g['id'] == new_id else g for g in good]
    sizes: dict = {}

    def check(entry: dict) -> str | None:
        error = check_backup(entry)
        sizes[entry['id']] = _artifact_bytes(entry['path'])
        return error

    plan = plan_retention(good, keep, keep_days, now, check=check)
    removed, errors = [], []
    for entry in plan['expired']:
        if not check_mode:
            try:
                shutil.rmtree(entry['path'])
            except OSError as exc:
                errors.append('could not remove expired backup %s: %s' % (entry['path'], exc))
                continue
        removed.append(entry['id'])
    damaged = [{'id': d['id'], 'error': d['error']} for d in plan['damaged']]
    damaged += [{'id': b['id'], 'error': b['error']} for b in listing['bad'] if b.get('instance') in (None, instance)]
    damaged.sort(key=lambda d: d['id'], reverse=True)
    return {'removed': removed, 'damaged': damaged, 'checked': len(plan['checked']), 'checked_bytes': sum(sizes.values()),
            'check_seconds': round(time.monotonic() - started, 3), 'errors': errors}


def _artifact_bytes(directory: str) -> int:
    """Bytes of the regular files directly in ``directory`` (what a checksum check reads), 0 when unreadable."""
    total = 0
    try:
        with os.scandir(directory) as it:
            for item in it:
                if item.is_file(follow_symlinks=False):
                    total += item.stat(follow_symlinks=False).st_size
    except OSError:
        pass
    return total


# --- partial directories: an owner record and a lock, so that leftovers of a killed backup can be proven dead ---

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


# --- option validation: every problem found before any work, each naming the option, the value and what is expected ---

MAX_TIMEOUT = 7 * 86400
NAME_MAX = 255
PATH_MAX = 4096


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:100] + '...(%d characters)' % len(value)


def path_problems(option: str, value, absolute: bool = True) -> list:
    """Why ``value`` is no usable path for ``option`` (empty list when it is). None is fine (option not given)."""
    if value is None:
        return []
    if not isinstance(value, str) or value == '':
        return ['%s must be a non-empty path; got %s' % (option, _shown(value))]
    if '\0' in value:
        return ['%s contains a NUL byte, which no path can hold; got %s' % (option, _shown(value))]
    try:
        raw = os.fsencode(value)
    except UnicodeEncodeError:
        return ['%s cannot be encoded as a file name (lone surrogate characters); got %s' % (option, _shown(value))]
    if len(raw) >= PATH_MAX or any(len(part) > NAME_MAX for part in raw.split(b'/')):
        return ['%s is longer than a path (%d bytes) or a path component (%d bytes) may be; got %s'
                % (option, PATH_MAX - 1, NAME_MAX, _shown(value))]
    if absolute and not value.startswith('/'):
        return ['%s must be an absolute path (a module runs in a directory of its own choosing); got %s' % (option, _shown(value))]
    return []


def name_problems(option: str, value) -> list:
    """Why ``value`` is no usable directory name (one path component, not hidden, no control characters)."""
    if not isinstance(value, str) or value in ('', '.', '..') or '/' in value or value.startswith('.'):
        return ['%s %s is not usable as a directory name (one path component, not starting with a dot); set instance:'
                % (option, _shown(value))]
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return ['%s %s contains control characters (NUL, line breaks, ...); choose a plain name' % (option, _shown(value))]
    try:
        raw = os.fsencode(value)
    except UnicodeEncodeError:
        return ['%s %s cannot be encoded as a file name (lone surrogate characters)' % (option, _shown(value))]
    if len(raw) > NAME_MAX:
        return ['%s is %d bytes long; a directory name may have at most %d' % (option, len(raw), NAME_MAX)]
    return []


def int_problems(option: str, value, low: int, high: int, why: str = '') -> list:
    """Why ``value`` is no integer from ``low`` to ``high`` for ``option`` (bools refused). None is fine."""
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int):
        return ['%s must be an integer from %d to %d; got %s' % (option, low, high, _shown(value))]
    if not low <= value <= high:
        return ['%s must be from %d to %d%s; got %d' % (option, low, high, why, value)]
    return []


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


def running_pids(exe: str, proc: str = '/proc') -> list:
    """PIDs whose resolved /proc/PID/exe is ``exe`` (resolved): the instance runs when this is not empty."""
    target = os.path.realpath(exe)
    found = []
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            link = os.readlink(os.path.join(proc, name, 'exe'))
        except OSError:
            continue
        if link.endswith(' (deleted)'):
            link = link[:-len(' (deleted)')]
        if link == target:
            found.append(int(name))
    return sorted(found)


def parse_site_mysql(text: str | None, default: dict, site_id: int) -> dict:
    """Connection of a site from the websites.mysql JSON; ``use_default`` takes the default credentials."""
    if site_id == 1 or not text:
        if site_id != 1 and not text:
            raise BackupError('site %d has an empty websites.mysql column: its database is unknown' % site_id)
        return dict(default)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BackupError('site %d: websites.mysql is not valid JSON (%s)' % (site_id, exc)) from None
    if not isinstance(data, dict) or not data.get('database'):
        raise BackupError('site %d: websites.mysql names no database' % site_id)
    _config_strings(data, 'websites.mysql of site %d' % site_id)
    if data.get('use_default'):
        conn = dict(default)
        conn['database'] = data['database']
        return conn
    return {'database': data['database'], 'user': data.get('user') or default.get('user'),
            'password': data.get('password') if data.get('password') is not None else default.get('password'),
            'host': data.get('host') or default.get('host'),
            'port': config_port(data.get('port'), 'websites.mysql port of site %d' % site_id, default.get('port') or 3306)}


def config_port(value, where: str, default: int) -> int:
    """A TCP port read from configuration (a number or a string of digits); unset or 0 is ``default``."""
    if value is None or value == '' or value == 0:
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise BackupError('%s is %.60r, which is no TCP port (1-65535): repair it' % (where, value))
    return value


def _config_strings(section: dict, where: str) -> None:
    """Refuse connection settings that are not strings (AnQiCMS itself could not read them either)."""
    for key in ('database', 'user', 'password', 'host'):
        value = section.get(key)
        if value is not None and not isinstance(value, str):
            raise BackupError('%s: %s must be a string, not %s' % (where, key, type(value).__name__))
        if isinstance(value, str) and '\0' in value:
            raise BackupError('%s: %s contains a NUL byte' % (where, key))


def hostname() -> str:
    return socket.gethostname()


def disk_error(exc: OSError, where: str) -> BackupError:
    if exc.errno == errno.ENOSPC:
        return BackupError('the backup target %s ran out of space (%s); the partial backup was removed: free space or '
                           'choose another dest' % (where, exc.strerror))
    if exc.errno == errno.EDQUOT:
        return BackupError('the disk quota of %s is exhausted; the partial backup was removed' % where)
    return BackupError('writing the backup under %s failed: %s' % (where, exc))


def read_instance_config(path: str) -> dict:
    """The mysql section of ``<path>/config.json`` as a connection dict."""
    config_path = os.path.join(path, 'config.json')
    try:
        with open(config_path, 'rb') as handle:
            data = json.loads(handle.read(1024 * 1024).decode('utf-8'))
    except FileNotFoundError:
        raise BackupError('%s does not exist: is %s the install directory of an AnQiCMS instance?' % (config_path, path)) from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BackupError('%s is not valid JSON (%s): repair it before backing up' % (config_path, exc)) from None
    except OSError as exc:
        raise BackupError('%s cannot be read (%s)' % (config_path, exc.strerror or exc)) from None
    mysql = data.get('mysql') if isinstance(data, dict) else None
    if not isinstance(mysql, dict) or not mysql.get('database'):
        raise BackupError('%s has no mysql.database: the instance is not installed yet (nothing to back up)' % config_path)
    _config_strings(mysql, '%s (mysql section)' % config_path)
    server = data.get('server') if isinstance(data.get('server'), dict) else {}
    return {'database': mysql.get('database'), 'user': mysql.get('user') or '', 'password': mysql.get('password') or '',
            'host': mysql.get('host') or '127.0.0.1', 'port': config_port(mysql.get('port'), '%s mysql.port' % config_path, 3306),
            'server_port': config_port(server.get('port'), '%s server.port' % config_path, 8001)}


def connection(conn: dict, login: dict | None) -> dict:
    """Client connection for ``conn``, with the login_* overrides of the task applied."""
    out = {'user': conn.get('user'), 'password': conn.get('password'), 'host': conn.get('host'), 'port': conn.get('port')}
    if login:
        if login.get('user') not in (None, ''):
            # Another user: the configured password belongs to the configured user, never to this one.
            out['password'] = None
        for key in ('user', 'password', 'host', 'port', 'socket'):
            if login.get(key) not in (None, ''):
                out[key] = login[key]
        if out.get('socket'):
            out['host'] = out['port'] = None
    return out


def discover_sites(rows: list, default: dict, install_path: str) -> list:
    """Sites from rows of ``SELECT id, HEX(root_path), HEX(name), HEX(mysql), status FROM websites``."""
    sites = []
    for row in rows:
        site_id = int(row[0])
        root = bytes.fromhex(row[1] or '').decode('utf-8', 'replace')
        name = bytes.fromhex(row[2] or '').decode('utf-8', 'replace')
        mysql_text = bytes.fromhex(row[3] or '').decode('utf-8', 'replace')
        conn = parse_site_mysql(mysql_text, default, site_id)
        if site_id == 1:
            root = install_path
        sites.append({'id': site_id, 'name': name, 'root': root, 'conn': conn, 'database': conn['database'],
                      'status': int(row[4]) if row[4] not in (None, '') else None})
    if not any(s['id'] == 1 for s in sites):
        sites.insert(0, {'id': 1, 'name': '', 'root': install_path, 'conn': dict(default), 'database': default['database'],
                         'status': None})
    return sites


SITES_SQL = 'SELECT id, HEX(root_path), HEX(name), HEX(IFNULL(mysql, \'\')), status FROM websites ORDER BY id;'


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
