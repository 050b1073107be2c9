# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import concurrent.futures
import gzip
import json
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_streams import dump_database
from ansible_collections.opsguard.anqicms.plugins.module_utils.mysql_client import (
    MysqlClient,
    MysqlError,
    defaults_text,
    find_binary,
    parse_batch,
    quote_ident,
    secret_fd,
    unescape_batch,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils.sql import SqlError, literal


PASSWORD = 'pa"ss\\w#rd-0xSECRET'
CONN = {'user': 'app', 'password': PASSWORD, 'host': '127.0.0.1', 'port': 3307}

# A stand-in for mariadb/mariadb-dump: reads its --defaults-file, looks for the password in every file under
# the directories named in OPSG_SCAN (while it runs, i.e. while the module would be dumping), reports both as
# JSON on stdout, optionally announces itself in OPSG_READY and sleeps (a long dump).
FAKE_CLIENT = r'''#!%s
import json, os, sys, time
arg = sys.argv[1]
assert arg.startswith('--defaults-file='), sys.argv
path = arg.split('=', 1)[1]
with open(path) as handle:
    options = handle.read()
secret = os.environ['OPSG_SECRET'].encode()
found = []
for top in os.environ['OPSG_SCAN'].split(':'):
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            full = os.path.join(dirpath, name)
            try:
                with open(full, 'rb') as handle:
                    if secret in handle.read():
                        found.append(full)
            except OSError:
                pass
sys.stdin.read()
print(json.dumps({'path': path, 'options': options, 'found': found, 'argv': sys.argv[1:]}))
sys.stdout.flush()
if os.environ.get('OPSG_READY'):
    with open(os.environ['OPSG_READY'] + '.tmp', 'w') as handle:
        handle.write(str(os.getpid()))
    os.rename(os.environ['OPSG_READY'] + '.tmp', os.environ['OPSG_READY'])
    time.sleep(float(os.environ.get('OPSG_SLEEP', '0')))
print('-- Dump completed')
'''


@pytest.fixture
def fake_client(tmp_path, monkeypatch):
    """A fake client binary; the temp directory of this process and its children is tmp_path/tmp."""
    script = tmp_path / 'bin' / 'fake-mariadb'
    script.parent.mkdir()
    script.write_text(FAKE_CLIENT % sys.executable)
    script.chmod(0o755)
    tmp = tmp_path / 'tmp'
    tmp.mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp))
    monkeypatch.setenv('TMPDIR', str(tmp))
    monkeypatch.setenv('OPSG_SECRET', 'xSECRET')
    monkeypatch.setenv('OPSG_SCAN', '%s:%s' % (tmp, '/dev/shm' if os.path.isdir('/dev/shm') else tmp))
    return str(script), tmp


def files_holding(top, secret: bytes) -> list:
    found = []
    for dirpath, _dirs, files in os.walk(str(top)):
        for name in files:
            with open(os.path.join(dirpath, name), 'rb') as handle:
                if secret in handle.read():
                    found.append(os.path.join(dirpath, name))
    return found


def test_options_reach_the_client_through_an_inherited_descriptor_never_a_file(fake_client):
    script, tmp = fake_client
    with MysqlClient(CONN, client=script, dump=script) as client:
        assert re.fullmatch(r'/(dev|proc/self)/fd/\d+', client.defaults_file), client.defaults_file
        assert stat.S_IMODE(os.fstat(client.pass_fds[0]).st_mode) == 0o600, 'the clients ignore a world-writable option file'
        cmd = client.dump_cmd('shop')
        assert not any('SECRET' in part for part in cmd + client.client_cmd('shop')), 'the password is never on a command line'
        # Several invocations, one after another and side by side: each reads the whole option text.
        reports = [json.loads(client.run_sql('SELECT 1;').splitlines()[0]) for dummy in range(3)]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            reports += [json.loads(r.splitlines()[0]) for r in pool.map(lambda dummy: client.run_sql('SELECT 1;'), range(4))]
    for report in reports:
        assert report['path'] == client.defaults_file
        assert 'password="pa\\"ss\\\\w#rd-0xSECRET"' in report['options'] and 'protocol=TCP' in report['options']
        assert 'port=3307' in report['options']
        assert report['found'] == [], 'a file holding the password exists while the client runs: %s' % report['found']
    assert files_holding(tmp, b'xSECRET') == [] and os.listdir(str(tmp)) == []


def test_a_long_dump_reads_the_options_and_nothing_reaches_the_disk(fake_client, tmp_path):
    script, tmp = fake_client
    out = tmp_path / 'out'
    out.mkdir()
    with MysqlClient(CONN, client=script, dump=script) as client:
        dump_database(client.dump_cmd('shop'), str(out / 'db.sql.gz'), timeout=60, pass_fds=client.pass_fds)
    with gzip.open(str(out / 'db.sql.gz'), 'rt') as handle:
        report = json.loads(handle.readline())
    assert report['argv'][-1] == 'shop' and 'xSECRET' in report['options'] and report['found'] == []


def test_close_releases_the_descriptor_and_other_children_never_see_it(fake_client):
    script, _tmp = fake_client
    client = MysqlClient(CONN, client=script)
    fd = client.pass_fds[0]
    listing = subprocess.run(['ls', '/proc/self/fd'], capture_output=True, text=True, check=True).stdout.split()
    assert str(fd) not in listing, 'a child not meant to read the options inherits the descriptor'
    client.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    assert client.pass_fds == ()


def test_without_memfd_an_anonymous_tmpfile_is_used(monkeypatch):
    monkeypatch.delattr(os, 'memfd_create', raising=False)
    if not hasattr(os, 'O_TMPFILE') or not os.path.isdir('/dev/shm'):
        pytest.skip('no O_TMPFILE or /dev/shm here')
    fd = secret_fd('[client]\npassword=x\n')
    try:
        assert os.readlink('/proc/self/fd/%d' % fd).endswith('(deleted)'), 'the fallback file must have no name'
        with open('/dev/fd/%d' % fd) as first, open('/dev/fd/%d' % fd) as second:
            assert first.read() == second.read() == '[client]\npassword=x\n'
    finally:
        os.close(fd)


def test_no_anonymous_file_at_all_is_a_clear_error(monkeypatch):
    monkeypatch.delattr(os, 'memfd_create', raising=False)
    monkeypatch.delattr(os, 'O_TMPFILE', raising=False)
    with pytest.raises(MysqlError, match='neither memfd_create nor O_TMPFILE'):
        secret_fd('[client]\n')


@pytest.mark.parametrize('names', [('mariadb', 'mysql'), ('mariadb-dump', 'mysqldump')])
def test_the_real_clients_read_options_from_dev_fd(names):
    binary = find_binary(names)
    if not binary:
        pytest.skip('%s not installed' % (names,))
    with MysqlClient(CONN, client=binary) as client:
        proc = subprocess.run([binary, '--defaults-file=' + client.defaults_file, '--print-defaults'], capture_output=True,
                              text=True, pass_fds=client.pass_fds, check=False, timeout=30)
    assert proc.returncode == 0 and 'World-writable' not in proc.stderr, proc.stderr
    assert '--password=' + PASSWORD + ' ' in proc.stdout, 'the quoted password must reach the client intact'
    assert '--user=app' in proc.stdout and '--port=3307' in proc.stdout


KILLED_BACKUP = r'''
import sys
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_streams import dump_database
from ansible_collections.opsguard.anqicms.plugins.module_utils.mysql_client import MysqlClient
client = MysqlClient({'user': 'app', 'password': 'pw-xSECRET', 'host': '127.0.0.1', 'port': 3306}, client=sys.argv[1], dump=sys.argv[1])
dump_database(client.dump_cmd('shop'), sys.argv[2], timeout=600, pass_fds=client.pass_fds)
'''


def test_a_sigkilled_backup_leaves_no_password_on_disk(fake_client, tmp_path, procs):
    script, tmp = fake_client
    ready = tmp_path / 'ready'
    env = dict(os.environ, OPSG_READY=str(ready), OPSG_SLEEP='60',
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = procs([sys.executable, '-c', KILLED_BACKUP, script, str(tmp_path / 'db.sql.gz')], env=env,
                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, 'the fake dump never started'
        time.sleep(0.05)
    dump_pid = int(ready.read_text())
    assert files_holding(tmp, b'xSECRET') == [], 'the password is on disk while the dump runs'
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    os.kill(dump_pid, signal.SIGKILL)
    assert files_holding(tmp, b'xSECRET') == [] and os.listdir(str(tmp)) == []
    assert files_holding(tmp_path, b'xSECRET') == [], 'the password outlived the SIGKILLed process'


def test_socket_connection_uses_the_socket():
    text = defaults_text({'user': 'root', 'socket': '/run/mysqld/mysqld.sock'})
    assert 'socket=/run/mysqld/mysqld.sock' in text and 'protocol=SOCKET' in text and 'password' not in text


@pytest.mark.parametrize('value', ['a\nhost=evil', 'a\rb', 'a\0b'])
def test_line_breaks_and_nul_in_credentials_are_refused(value):
    with pytest.raises(MysqlError, match='password .*line break or a NUL byte'):
        defaults_text({'user': 'u', 'password': value})


@pytest.mark.parametrize('raw, value', [
    ('plain', 'plain'), ('NULL', None), ('a\\tb', 'a\tb'), ('a\\nb', 'a\nb'), ('back\\\\slash', 'back\\slash'), ('z\\0', 'z\0'),
])
def test_unescape_batch(raw, value):
    assert unescape_batch(raw) == value


def test_parse_batch_rows():
    assert parse_batch('1\ta\\tb\n2\tNULL\n') == [['1', 'a\tb'], ['2', None]]


def test_quoting():
    assert quote_ident('we`ird') == '`we``ird`'
    assert literal("it's \\") == "X'%s'" % "it's \\".encode().hex().upper()
    with pytest.raises(SqlError):
        quote_ident('')
