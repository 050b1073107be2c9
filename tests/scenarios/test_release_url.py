# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The app role's download path: the release archive over HTTP, verified by its sha256.

An HTTP server on this machine, bound to the lab bridge's address (``control`` inside the hosts), serves release
archives laid out like the vendor's download directory (``/downloads/anqicms-linux-amd64-v<version>.zip``) and
records every request. One host (1 GiB) gets MariaDB, one AnQiCMS instance and nginx from ``app_release_url`` +
``app_release_sha256``; then:

- a rerun of the app role changes nothing and does not download again (the server saw no request);
- a new version's URL with a wrong sha256, a URL that answers 404, a file that is not a zip and a release wrapped in a
  directory are each refused with a message naming the URL (and both checksums for the wrong one), before anything is
  replaced: the instance's binary, config.json, data and process are unchanged and it keeps serving, and the cache holds
  nothing it did not hold before (no download, no partial tree);
- the same new version with its right sha256 upgrades the instance, user data untouched (the upgraded instance still
  answers through nginx).

Every run after the first applies the app role alone (``tests/roles/app.yml``): the release is the app role's, and
MariaDB and nginx, deployed by the first run, have nothing to do (the whole stack's rerun is the roles scenario's).

The tests run in file order and share one fleet (lab name ``<OPSGUARD_LAB_NAME>-release``).
"""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import pathlib
import threading
import urllib.error
import urllib.request
import zipfile
from typing import Any, Iterator

import pytest

import fleet
from ansible_collections.opsguard.anqicms.tests.utils import ansible_runner
from ansible_collections.opsguard.anqicms.tests.utils.lab import running_fleet
import standin

REPO = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = REPO / 'tests' / 'roles' / 'deploy.yml'
APP = REPO / 'tests' / 'roles' / 'app.yml'   # the app role alone, for every run after the first
LAB = fleet.derived_name('release')
MEMORY = 1 << 30
HOST = 'node1'
CACHE = '/var/cache/opsguard-anqicms'
DIRECTORY = '/opt/anqicms/site1'

ADMIN_PASSWORD = 'Adm1n-release!'
DB_PASSWORD = 'Db1-release<&>'
INSTANCES = [{'name': 'site1', 'port': 8001, 'db_password': DB_PASSWORD, 'server_name': 'site1.test'}]

CURRENT = 'anqicms-linux-amd64-v3.5.8.zip'
NEXT = 'anqicms-linux-amd64-v3.5.9.zip'          # a new release: the stand-in plus release notes
NOT_A_ZIP = 'anqicms-linux-amd64-v3.6.0.zip'     # what a download page gives instead of the file
WRAPPED = 'anqicms-3.6.1.zip'                    # the release inside a directory
MISSING = 'anqicms-linux-amd64-v9.9.9.zip'       # not on the server


class ReleaseServer:
    """A threaded HTTP server on the bridge address, serving a directory and recording (method, path, status)."""

    def __init__(self, address: str, root: pathlib.Path) -> None:
        self.requests: list[tuple[str, str, int]] = []
        lock = threading.Lock()
        log = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def log_request(self, code: Any = '-', size: Any = '-') -> None:
                with lock:
                    log.append((self.command, self.path, int(getattr(code, 'value', code))))

            def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
                del format, args

        self.httpd = http.server.ThreadingHTTPServer((address, 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f'http://control:{self.httpd.server_address[1]}/downloads/'
        self.thread = threading.Thread(target=self.httpd.serve_forever, name='release-server', daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return self.base + name

    def gets(self, name: str) -> list[tuple[str, str, int]]:
        return [r for r in self.requests if r[0] == 'GET' and r[1] == '/downloads/' + name]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=30)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_downloads(root: pathlib.Path, current: pathlib.Path) -> dict[str, str]:
    """The download directory; returns file name -> sha256."""
    downloads = root / 'downloads'
    downloads.mkdir(parents=True)
    files: dict[str, bytes] = {CURRENT: current.read_bytes()}
    for name, wrap, notes in ((NEXT, '', 'AnQiCMS 3.5.9 stand-in\n'), (WRAPPED, 'anqicms-3.6.1/', '')):
        buffer = io.BytesIO()
        with zipfile.ZipFile(current) as source, zipfile.ZipFile(buffer, 'w', zipfile.ZIP_DEFLATED) as target:
            if wrap:
                target.writestr(zipfile.ZipInfo(wrap, date_time=(2024, 1, 1, 0, 0, 0)), b'')
            for info in source.infolist():
                data = source.read(info)
                info.filename = wrap + info.filename
                target.writestr(info, data)
            if notes:
                target.writestr('RELEASE-NOTES.txt', notes)
        files[name] = buffer.getvalue()
    files[NOT_A_ZIP] = b'<!DOCTYPE html><html><body><h1>AnQiCMS downloads</h1><a href="/downloads/">v3.6.0</a></body></html>\n'
    for name, data in files.items():
        (downloads / name).write_bytes(data)
    return {name: sha256(data) for name, data in files.items()}


@pytest.fixture(scope='module')
def lab() -> Iterator[fleet.Fleet]:
    with running_fleet(1, MEMORY, LAB, lab=fleet) as running:
        yield running


@pytest.fixture(scope='module')
def downloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp('release-server')
    sums = build_downloads(root, standin.build())
    sums['root'] = str(root)
    return sums


@pytest.fixture(scope='module')
def server(lab: fleet.Fleet, downloads: dict[str, str]) -> Iterator[ReleaseServer]:
    running = ReleaseServer(lab.names.gateway, pathlib.Path(downloads['root']))
    try:
        yield running
    finally:
        running.stop()


def deploy_vars(url: str, sha: str, version: str = '3.5.8') -> dict[str, Any]:
    return {'app_release_url': url, 'app_release_sha256': sha, 'app_release_version': version, 'app_admin_password': ADMIN_PASSWORD,
            'app_instances': json.loads(json.dumps(INSTANCES))}


def run(lab: fleet.Fleet, extra: dict[str, Any], playbook: pathlib.Path = DEPLOY) -> tuple[int, dict[str, int], str]:
    proc = lab.playbook(playbook, extra_vars=extra, timeout=900)
    out = proc.stdout + proc.stderr
    assert ADMIN_PASSWORD not in out and DB_PASSWORD not in out, 'a password appeared in the ansible-playbook output'
    return proc.returncode, ansible_runner.recap(proc.stdout).get(HOST, {}), out


def sh(lab: fleet.Fleet, cmd: str) -> str:
    return lab.exec(HOST, cmd, timeout=120).stdout.strip()


def instance_state(lab: fleet.Fleet) -> dict[str, str]:
    """What a refused release must leave alone: program, config, user data, process, and the cache's contents."""
    return {
        'files': sh(lab, f'cd {DIRECTORY} && sha256sum anqicms config.json && find data template public -type f -print0 '
                         '| sort -z | xargs -0 sha256sum'),
        'pid': sh(lab, 'systemctl show -p MainPID --value anqicms-site1'),
        'cache': sh(lab, f'ls -A {CACHE}'),
    }


def version_via_nginx(lab: fleet.Fleet) -> tuple[int, bytes]:
    request = urllib.request.Request(f'http://{lab.host(HOST).address}/system/api/version/info', headers={'Host': 'site1.test'})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def zip_member_sha(path: pathlib.Path, member: str) -> str:
    with zipfile.ZipFile(path) as archive:
        return sha256(archive.read(member))


def test_deploy_from_the_url(lab, server, downloads):
    rc, recap, out = run(lab, deploy_vars(server.url(CURRENT), downloads[CURRENT]))
    assert rc == 0, out[-4000:]
    assert recap['failed'] == 0 and recap['changed'] > 0, recap
    assert server.gets(CURRENT) == [('GET', '/downloads/' + CURRENT, 200)], server.requests
    sha16 = downloads[CURRENT][:16]
    assert sh(lab, f'ls -A {CACHE}').split() == [f'{CURRENT}.{sha16}', f'v3.5.8-{sha16}']
    assert sh(lab, f'sha256sum < {CACHE}/{CURRENT}.{sha16}').split()[0] == downloads[CURRENT]
    binary = zip_member_sha(pathlib.Path(downloads['root']) / 'downloads' / CURRENT, 'anqicms')
    assert sh(lab, f'sha256sum < {DIRECTORY}/anqicms').split()[0] == binary
    status, body = version_via_nginx(lab)
    assert status == 200 and json.loads(body)['data']['version'] == standin.VERSION, body


def test_a_rerun_changes_nothing_and_downloads_nothing(lab, server, downloads):
    server.requests.clear()
    rc, recap, out = run(lab, deploy_vars(server.url(CURRENT), downloads[CURRENT]), APP)
    assert rc == 0, out[-4000:]
    assert recap['changed'] == 0 and recap['failed'] == 0, ansible_runner.changed_tasks(out)
    assert server.requests == [], f'the cached archive was downloaded again: {server.requests}'


@pytest.mark.parametrize('case', ['wrong sha256 for a new version', 'URL that answers 404', 'file that is not a zip',
                                  'release wrapped in a directory'])
def test_a_bad_release_is_refused_before_anything_is_replaced(lab, server, downloads, case):
    url_of = server.url
    if case == 'wrong sha256 for a new version':
        # The URL moved on to 3.5.9, the sha256 is still the one of 3.5.8.
        name, sha = NEXT, downloads[CURRENT]
        expected = [f'release archive {url_of(NEXT)} has sha256 {downloads[NEXT]}, expected {downloads[CURRENT]}',
                    'the download was deleted and nothing was kept in ' + CACHE]
    elif case == 'URL that answers 404':
        name, sha = MISSING, downloads[NEXT]
        expected = [f'release archive {url_of(MISSING)} could not be downloaded: the server answered HTTP 404']
    elif case == 'file that is not a zip':
        name, sha = NOT_A_ZIP, downloads[NOT_A_ZIP]
        expected = [f'release archive {url_of(NOT_A_ZIP)} is not a zip archive unzip can read (exit status 9']
    else:
        name, sha = WRAPPED, downloads[WRAPPED]
        expected = [f'release archive {url_of(WRAPPED)} has no anqicms binary at its top level',
                    'it has anqicms-3.6.1/anqicms: the release is wrapped in a directory']
    sh(lab, f'mkdir -p {DIRECTORY}/data/backup && echo keep > {DIRECTORY}/data/backup/marker.sql')
    before = instance_state(lab)
    server.requests.clear()

    rc, recap, out = run(lab, deploy_vars(url_of(name), sha), APP)

    assert rc != 0 and recap['failed'] == 1, out[-3000:]
    for fragment in expected + [f'{HOST}, nothing was replaced: ', 'Fix: ']:
        assert fragment in out, f'{case}: {fragment!r} missing from:\n{out[-3000:]}'
    assert len(server.gets(name)) == 1, f'{case}: expected one download of {name}: {server.requests}'
    assert instance_state(lab) == before, f'{case}: the instance or the cache changed'
    if case in ('wrong sha256 for a new version', 'URL that answers 404'):
        assert recap['changed'] == 0, ansible_runner.changed_tasks(out)
    status, body = version_via_nginx(lab)
    assert status == 200, f'{case}: the instance stopped serving: {status} {body[:200]!r}'


def test_the_right_sha256_upgrades_and_keeps_user_data(lab, server, downloads):
    kept = sh(lab, f'cd {DIRECTORY} && sha256sum config.json data/backup/marker.sql')
    pid_before = sh(lab, 'systemctl show -p MainPID --value anqicms-site1')
    server.requests.clear()

    rc, recap, out = run(lab, deploy_vars(server.url(NEXT), downloads[NEXT], '3.5.9'), APP)

    assert rc == 0, out[-4000:]
    assert server.gets(NEXT) == [('GET', '/downloads/' + NEXT, 200)], server.requests
    assert sh(lab, f'cat {DIRECTORY}/RELEASE-NOTES.txt') == 'AnQiCMS 3.5.9 stand-in'
    assert sh(lab, f'cd {DIRECTORY} && sha256sum config.json data/backup/marker.sql') == kept
    assert sh(lab, 'systemctl show -p MainPID --value anqicms-site1') != pid_before, 'not restarted after the upgrade'
    sha16 = downloads[NEXT][:16]
    cache = sh(lab, f'ls -A {CACHE}').split()
    assert f'{NEXT}.{sha16}' in cache and f'v3.5.9-{sha16}' in cache, cache
    assert not [e for e in cache if e.endswith('.partial')], cache
    status, body = version_via_nginx(lab)
    assert status == 200, body
