# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which last-good config.json replaces a broken one: every file read is untrusted."""
from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import tarfile

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils import config_repair as cr
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import FORMAT, write_manifest

GOOD = {'mysql': {'database': 'anqicms_www', 'user': 'www', 'password': 'x', 'host': '127.0.0.1', 'port': 3306, 'use_default': False},
        'server': {'env': 'production', 'port': 8001, 'log_level': 'error'}}


def good_bytes(**server) -> bytes:
    doc = json.loads(json.dumps(GOOD))
    doc['server'].update(server)
    return json.dumps(doc, indent='\t').encode()


def make_backup(dest, instance: str, root: str, backup_id: str, config: bytes | None, kind: str = 'reg',
                flip: bool = False) -> str:
    """A backup as opsguard.anqicms.backup writes it: a files archive of site 1 and a manifest with sha256."""
    directory = dest / instance / backup_id
    directory.mkdir(parents=True)
    archive = directory / 'site1-files.tar.gz'
    with tarfile.open(archive, 'w:gz') as tar:
        if config is not None:
            info = tarfile.TarInfo('config.json')
            if kind == 'sym':
                info.type = tarfile.SYMTYPE
                info.linkname = '/etc/shadow'
                tar.addfile(info)
            else:
                info.size = len(config)
                tar.addfile(info, io.BytesIO(config))
        info = tarfile.TarInfo('data/x')
        info.size = 1
        tar.addfile(info, io.BytesIO(b'x'))
    payload = archive.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    if flip:
        archive.write_bytes(payload[:-1] + bytes([payload[-1] ^ 1]))
    write_manifest(str(directory), {
        'format': FORMAT, 'id': backup_id, 'instance': instance, 'complete': True,
        'sites': [{'id': 1, 'database': 'anqicms_www', 'root': root, 'db_artifact': None, 'files_artifact': 'site1-files.tar.gz'}],
        'artifacts': [{'name': 'site1-files.tar.gz', 'size': len(payload), 'sha256': digest, 'kind': 'files',
                       'items': ['config.json', 'data'] if config is not None else ['data']}]})
    return str(directory)


@pytest.mark.parametrize('data, expected', [
    (b'', 'is empty'),
    (b'  \n', 'is empty'),
    (good_bytes()[:40], 'is not valid JSON'),
    (b'[1, 2]', 'holds a JSON list'),
    (b'{"server": {"port": "8001"}}', 'where AnQiCMS expects an integer'),
    (b'{"mysql": 3}', 'where AnQiCMS expects an object'),
    (b'\xef\xbb\xbf{}', 'byte order mark'),
    (b'\xff\xfe', 'not valid UTF-8'),
    (b'{"a": NaN}', 'not valid JSON'),
    (b'{"a": 1, "a": 2}', 'duplicate key'),
])
def test_start_problem_names_what_a_kill_or_an_edit_broke(data, expected):
    problem = cr.start_problem(data, '/opt/anqicms/www/config.json')
    assert problem is not None and expected in problem and '/opt/anqicms/www/config.json' in problem
    assert 'left untouched' not in problem


def test_start_problem_accepts_what_anqicms_starts_with():
    assert cr.start_problem(good_bytes()) is None
    assert cr.start_problem(b'{}') is None      # not installed yet: AnQiCMS starts (install page)


def test_copy_problem_wants_an_installed_instance_of_this_port():
    assert cr.copy_problem(good_bytes(), 'c', 8001) is None
    assert cr.copy_problem(good_bytes(), 'c', None) is None
    assert 'is for port 8002, not port 8001' in cr.copy_problem(good_bytes(port=8002), 'c', 8001)
    assert 'holds no mysql.database' in cr.copy_problem(b'{"server": {"port": 8001}}', 'c', 8001)
    assert 'holds no mysql.database' in cr.copy_problem(b'{"mysql": {"database": ""}}', 'c', 8001)
    assert 'is empty' in cr.copy_problem(b'', 'c', 8001)


def test_read_regular_refuses_links_fifos_and_huge_files(tmp_path):
    real = tmp_path / 'real.json'
    real.write_bytes(good_bytes())
    link = tmp_path / 'link.json'
    link.symlink_to(real)
    fifo = tmp_path / 'fifo'
    os.mkfifo(fifo)
    huge = tmp_path / 'huge'
    huge.write_bytes(b' ' * (cr.MAX_FILE_BYTES + 1))
    assert cr.read_regular(str(real))[0] == good_bytes()
    assert cr.read_regular(str(link), follow=True)[0] == good_bytes()
    for path, message in ((link, 'symbolic link'), (fifo, 'not a regular file'), (huge, 'more than'),
                          (tmp_path / 'none', 'does not exist'), (tmp_path, 'not a regular file')):
        with pytest.raises(cr.RepairError, match=message):
            cr.read_regular(str(path))


def test_backup_config_only_after_the_backup_verified(tmp_path):
    root = '/opt/anqicms/www'
    good = make_backup(tmp_path, 'www', root, '20260101T000000000000Z', good_bytes())
    assert cr.backup_config(good, root) == good_bytes()
    damaged = make_backup(tmp_path, 'www', root, '20260102T000000000000Z', good_bytes(), flip=True)
    with pytest.raises(cr.RepairError, match='failed verification'):
        cr.backup_config(damaged, root)
    other = make_backup(tmp_path, 'www', '/opt/anqicms/shop', '20260103T000000000000Z', good_bytes())
    with pytest.raises(cr.RepairError, match='is not of /opt/anqicms/www'):
        cr.backup_config(other, root)
    none = make_backup(tmp_path, 'www', root, '20260104T000000000000Z', None)
    with pytest.raises(cr.RepairError, match='holds no config.json'):
        cr.backup_config(none, root)
    link = make_backup(tmp_path, 'www', root, '20260105T000000000000Z', b'', kind='sym')
    with pytest.raises(cr.RepairError, match='not a regular file'):
        cr.backup_config(link, root)
    (tmp_path / 'www' / '20260106T000000000000Z').mkdir()
    with pytest.raises(cr.RepairError, match='no manifest.json'):
        cr.backup_config(str(tmp_path / 'www' / '20260106T000000000000Z'), root)


def test_sources_newest_first_and_choose_the_newest_usable(tmp_path):
    root = '/opt/anqicms/www'
    dest = tmp_path / 'backups'
    copies = tmp_path / 'copies'
    copies.mkdir()
    old = make_backup(dest, 'www', root, '20260101T000000000000Z', good_bytes(log_level='old-backup'))
    make_backup(dest, 'www', root, '20260301T000000000000Z', good_bytes()[:30])          # cut short in the backup
    kept = copies / cr.copy_name(root)
    kept.write_bytes(good_bytes(log_level='kept'))
    feb = datetime.datetime(2026, 2, 1, tzinfo=datetime.timezone.utc).timestamp()
    os.utime(kept, (feb, feb))
    found = cr.sources(root, 'www', str(dest), str(copies))
    expected = [('backup', '20260301T000000000000Z'), ('kept', None), ('backup', '20260101T000000000000Z')]
    assert [(s['kind'], s['id']) for s in found] == expected
    chosen, passed = cr.choose_source(found, 8001)
    assert chosen['kind'] == 'kept' and json.loads(chosen['data'])['server']['log_level'] == 'kept'
    assert len(passed) == 1 and 'backup %s/www/20260301T000000000000Z' % dest in passed[0] and 'not valid JSON' in passed[0]
    # The kept copy belongs to another port: the older backup is next.
    kept.write_bytes(good_bytes(port=8002))
    os.utime(kept, (feb, feb))
    chosen, passed = cr.choose_source(cr.sources(root, 'www', str(dest), str(copies)), 8001)
    assert chosen['kind'] == 'backup' and chosen['where'] == old and chosen['id'] == '20260101T000000000000Z'
    assert 'is for port 8002, not port 8001' in passed[1]
    # A kept copy that is a symbolic link is passed over, never followed.
    kept.unlink()
    kept.symlink_to(tmp_path / 'elsewhere.json')
    (tmp_path / 'elsewhere.json').write_bytes(good_bytes(log_level='link'))
    chosen, passed = cr.choose_source(cr.sources(root, 'www', str(dest), str(copies)), 8001)
    assert chosen['id'] == '20260101T000000000000Z' and any('symbolic link' in p for p in passed)


def test_choose_source_none_and_lazy_loading(tmp_path):
    assert cr.sources('/opt/anqicms/www', 'www', str(tmp_path / 'none'), str(tmp_path / 'none')) == []
    assert cr.choose_source([], 8001) == (None, [])
    loaded = []

    def load(data):
        def inner():
            loaded.append(data)
            return data
        return inner

    now = datetime.datetime.now(datetime.timezone.utc)
    cands = [{'kind': 'kept', 'where': 'a', 'time': now, 'load': load(good_bytes())},
             {'kind': 'backup', 'where': 'b', 'id': 'x', 'time': now, 'load': load(b'never read')}]
    chosen, passed = cr.choose_source(cands, 8001)
    assert chosen['where'] == 'a' and passed == [] and loaded == [good_bytes()]
    chosen, passed = cr.choose_source([dict(cands[0], load=load('text')), dict(cands[0], load=load(b'{"mysql": {}}'))], None)
    assert chosen is None and passed[0] == 'kept copy a: no content' and 'holds no mysql.database' in passed[1]


def test_copy_name_matches_the_record_names():
    assert cr.copy_name('/opt/anqicms/www') == 'opt_anqicms_www.json'
    assert cr.copy_name('/opt/anqicms/www/') == 'opt_anqicms_www.json'
