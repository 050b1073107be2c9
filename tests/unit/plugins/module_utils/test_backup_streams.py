# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import gzip
import hashlib
import os
import pathlib
import sys
import tarfile

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import (
    BackupError,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_streams import (
    archive_files,
    dump_database,
    extract_files,
    load_dump,
)


TRAILER = '-- Dump completed on 2026-03-10 12:00:00\n'


def python_cmd(code: str) -> list:
    return [sys.executable, '-c', code]


def test_dump_is_compressed_hashed_and_has_its_trailer(tmp_path):
    dest = tmp_path / 'd.sql.gz'
    body = 'INSERT INTO t VALUES (1);\n' * 50000
    info = dump_database(python_cmd('import sys; sys.stdout.write(%r * 50000 + %r)' % ('INSERT INTO t VALUES (1);\n', TRAILER)),
                         str(dest))
    raw = gzip.decompress(dest.read_bytes()).decode()
    assert raw == body + TRAILER
    assert info['size'] == dest.stat().st_size and info['raw_size'] == len(raw)
    assert info['sha256'] == hashlib.sha256(dest.read_bytes()).hexdigest()
    assert oct(dest.stat().st_mode & 0o777) == '0o600'


def test_dump_without_trailer_is_refused(tmp_path):
    with pytest.raises(BackupError, match='no completion trailer'):
        dump_database(python_cmd('print("INSERT INTO t VALUES (1);")'), str(tmp_path / 'd.sql.gz'))


def test_dump_exit_status_is_checked_even_with_a_trailer(tmp_path):
    code = 'import sys; sys.stdout.write(%r); sys.stderr.write("Lost connection"); sys.exit(2)' % TRAILER
    with pytest.raises(BackupError, match=r'exited with status 2: Lost connection'):
        dump_database(python_cmd(code), str(tmp_path / 'd.sql.gz'))


def test_dump_never_overwrites_an_existing_file(tmp_path):
    dest = tmp_path / 'd.sql.gz'
    dest.write_text('keep me')
    with pytest.raises(FileExistsError):
        dump_database(python_cmd('print(1)'), str(dest))
    assert dest.read_text() == 'keep me'


def test_load_streams_the_dump_into_the_client_and_checks_its_status(tmp_path):
    src = tmp_path / 'd.sql.gz'
    src.write_bytes(gzip.compress(('SELECT 1;\n' * 1000 + TRAILER).encode()))
    out = tmp_path / 'received.sql'
    copy = 'import sys, shutil; shutil.copyfileobj(sys.stdin.buffer, open(%r, "wb"))' % str(out)
    assert load_dump(python_cmd(copy), str(src)) == len('SELECT 1;\n' * 1000 + TRAILER)
    assert out.read_text().endswith(TRAILER)
    with pytest.raises(BackupError, match='exit status 3'):
        load_dump(python_cmd('import sys; sys.stdin.read(); sys.exit(3)'), str(src))


def test_load_refuses_a_truncated_gzip_stream(tmp_path):
    src = tmp_path / 'd.sql.gz'
    src.write_bytes(gzip.compress(('SELECT 1;\n' * 1000 + TRAILER).encode())[:-12])
    with pytest.raises(BackupError, match='truncated gzip'):
        load_dump(python_cmd('import sys; sys.stdin.read()'), str(src))


@pytest.mark.parametrize('tar', [None, ''], ids=['gnu-tar', 'python-tarfile'])
def test_archive_keeps_only_the_kept_items_and_round_trips(tmp_path, tar):
    root = tmp_path / 'site'
    for rel, content in (('config.json', '{}'), ('public/uploads/a.bin', 'A'), ('template/default/index.html', 'T'),
                         ('data/cert/k.pem', 'K'), ('cache/.history/h', 'H'), ('cache/page.html', 'regenerable'),
                         ('anqicms', 'binary'), ('running.log', 'log')):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    os.symlink('uploads', root / 'public' / 'link')
    info = archive_files(str(root), str(tmp_path / 'f.tar.gz'), tar=tar)
    assert info['sha256'] == hashlib.sha256((tmp_path / 'f.tar.gz').read_bytes()).hexdigest()
    assert info['items'] == ['config.json', 'template', 'public', 'data', 'cache/.history']
    out = tmp_path / 'out'
    out.mkdir()
    assert extract_files(str(tmp_path / 'f.tar.gz'), str(out)) == info['items']
    assert (out / 'cache' / '.history' / 'h').read_text() == 'H'
    assert not (out / 'cache' / 'page.html').exists() and not (out / 'anqicms').exists()
    assert os.readlink(out / 'public' / 'link') == 'uploads'


@pytest.mark.parametrize('name, linkname, kind', [
    ('../evil', '', tarfile.REGTYPE),
    ('/etc/passwd', '', tarfile.REGTYPE),
    ('locales/x', '', tarfile.REGTYPE),
    ('public/dev', '', tarfile.CHRTYPE),
    ('public/escape', '/etc', tarfile.SYMTYPE),
])
def test_extract_refuses_members_outside_the_kept_items(tmp_path, name, linkname, kind):
    archive = tmp_path / 'bad.tar.gz'
    with tarfile.open(archive, 'w:gz') as tar:
        member = tarfile.TarInfo(name)
        member.type = kind
        member.linkname = linkname
        tar.addfile(member, None if kind != tarfile.REGTYPE else __import__('io').BytesIO(b''))
    out = tmp_path / 'out'
    out.mkdir()
    with pytest.raises(BackupError):
        extract_files(str(archive), str(out))
    assert not pathlib.Path('/etc/passwd').is_symlink()
