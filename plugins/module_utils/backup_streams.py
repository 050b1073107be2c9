# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Streams of a backup: database dumps through gzip, dumps loaded back, and the tar.gz of a site's kept files.

Each stream is hashed while it is written, checked for its command's exit status and, for dumps, for the
completion trailer; nothing is read into memory whole.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import zlib

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import CHUNK, GZIP_LEVEL, KEEP_ITEMS, TRAILER, BackupError, HashingWriter


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
