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
import os
import re
import shutil
import socket
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


def stream_to_gzip(cmd: list, dest: str, timeout: float = 3600.0, ok_codes: tuple = (0,), cwd: str | None = None) -> dict:
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
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, cwd=cwd)
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


def dump_database(dump_cmd: list, dest: str, timeout: float = 3600.0) -> dict:
    """Dump through gzip into ``dest``; check the dump's exit status and its completion trailer."""
    info = stream_to_gzip(dump_cmd, dest, timeout=timeout)
    last = info['tail'].rstrip(b'\n').rsplit(b'\n', 1)[-1]
    if not last.startswith(TRAILER):
        raise BackupError('the dump has no completion trailer ("-- Dump completed"): it was cut short after %d bytes'
                          % info['raw_size'])
    return {'size': info['size'], 'sha256': info['sha256'], 'raw_size': info['raw_size']}


def load_dump(load_cmd: list, source: str, timeout: float = 3600.0, prefix: bytes = b'') -> int:
    """Stream ``prefix`` and then a gzipped dump into ``load_cmd``'s stdin; return the dump's uncompressed size."""
    decompressor = zlib.decompressobj(31)
    tail = b''
    raw = 0
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryFile() as err, open(source, 'rb') as src:
        proc = subprocess.Popen(load_cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
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


def read_manifest(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path, 'rb') as handle:
            data = json.loads(handle.read(16 * 1024 * 1024).decode('utf-8'))
    except FileNotFoundError:
        raise BackupError('%s has no %s: it is not a complete backup' % (directory, MANIFEST)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError('%s is not valid JSON (%s): the backup is damaged' % (path, exc)) from None
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        raise BackupError('%s is not a manifest of format %s' % (path, FORMAT))
    for key, kind in (('id', str), ('instance', str), ('sites', list), ('artifacts', list)):
        if not isinstance(data.get(key), kind):
            raise BackupError('%s lacks a valid %r entry: the backup is damaged' % (path, key))
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
    """Scan ``<dest>/<instance>``: good backups (newest first), bad ones and partial leftovers."""
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
            manifest = read_manifest(path)
        except BackupError as exc:
            bad.append({'id': name, 'path': path, 'error': str(exc)})
            continue
        good.append({'id': name, 'path': path, 'time': id_time(name), 'instance': manifest.get('instance'),
                     'complete': manifest.get('complete') is True})
    good = [g for g in good if g['complete']]
    good.sort(key=lambda g: g['time'], reverse=True)
    return {'good': good, 'bad': bad, 'partial': partial}


def select_expired(good: list, keep: int | None, keep_days: float | None, now: datetime.datetime) -> list:
    """Backups (from ``good``, newest first) that retention removes.

    A backup stays when it is among the ``keep`` newest, or younger than ``keep_days``; with only
    one rule given, only that rule applies. The newest good backup always stays.
    """
    if keep is None and keep_days is None:
        return []
    if keep is not None and keep < 1:
        raise BackupError('keep must be at least 1 (the newest good backup is never deleted); got %d' % keep)
    if keep_days is not None and keep_days < 0:
        raise BackupError('keep_days must not be negative; got %s' % keep_days)
    expired = []
    for index, entry in enumerate(good):
        if index == 0:
            continue
        by_count = keep is not None and index < keep
        by_age = keep_days is not None and (now - entry['time']).total_seconds() < keep_days * 86400
        if not (by_count or by_age):
            expired.append(entry)
    return expired


def apply_retention(instance_dir: str, instance: str, keep: int | None, keep_days: float | None,
                    now: datetime.datetime, check_mode: bool = False) -> list:
    """Delete expired good backups of ``instance``; never anything else. Returns the removed ids."""
    listing = list_backups(instance_dir)
    good = [g for g in listing['good'] if g['instance'] == instance]
    removed = []
    for entry in select_expired(good, keep, keep_days, now):
        if not check_mode:
            shutil.rmtree(entry['path'])
        removed.append(entry['id'])
    return removed


def find_backup(dest: str, instance: str, backup_id: str) -> str:
    """Directory of backup ``backup_id`` (or the newest complete one for 'latest')."""
    instance_dir = os.path.join(dest, instance)
    if backup_id == 'latest':
        listing = list_backups(instance_dir)
        good = [g for g in listing['good'] if g['instance'] == instance]
        if not good:
            raise BackupError('no complete backup of instance %s under %s' % (instance, instance_dir))
        return good[0]['path']
    if not ID_RE.match(backup_id):
        raise BackupError("backup id %r is neither 'latest' nor of the form YYYYmmddTHHMMSS[ffffff]Z" % backup_id)
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
    if data.get('use_default'):
        conn = dict(default)
        conn['database'] = data['database']
        return conn
    return {'database': data['database'], 'user': data.get('user') or default.get('user'),
            'password': data.get('password') if data.get('password') is not None else default.get('password'),
            'host': data.get('host') or default.get('host'), 'port': int(data.get('port') or default.get('port') or 3306)}


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
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError('%s is not valid JSON (%s): repair it before backing up' % (config_path, exc)) from None
    mysql = data.get('mysql') if isinstance(data, dict) else None
    if not isinstance(mysql, dict) or not mysql.get('database'):
        raise BackupError('%s has no mysql.database: the instance is not installed yet (nothing to back up)' % config_path)
    return {'database': mysql.get('database'), 'user': mysql.get('user') or '', 'password': mysql.get('password') or '',
            'host': mysql.get('host') or '127.0.0.1', 'port': int(mysql.get('port') or 3306),
            'server_port': int(((data.get('server') or {}).get('port')) or 8001)}


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
