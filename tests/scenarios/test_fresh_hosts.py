# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A user's first deploy: the roles app, database and proxy on a fresh Debian 12 host, from nothing.

The host has its own root filesystem (tests/lab/image.py, ``image='fresh'``): systemd, sshd, python3 and
iproute2, and nothing the roles install. Every package comes from the lab's local apt repository, so a package
the roles forget is missing here and the deploy or the checks after it fail. Then: the instance answers through
nginx, memory_facts runs on the host (no psutil there), and a second run changes nothing.

The tests run in file order and share one fleet of one host (lab name ``<OPSGUARD_LAB_NAME>-fresh``): a second host
would repeat the same deploy and the same checks, and double the CPU the deploy needs.
Timings (boot, first deploy, rerun) are printed and written to tests/output/fresh_hosts_timings.json.
"""
from __future__ import annotations

import json
import os
import pathlib
import time
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
APP = REPO / 'tests' / 'roles' / 'app.yml'   # the app role alone: the forgotten package is the app role's
TIMINGS = REPO / 'tests' / 'output' / 'fresh_hosts_timings.json'
LAB = fleet.derived_name('fresh')
MEMORY = 1 << 30
ADMIN_PASSWORD = 'Adm1n-fresh!'
INSTANCES = [{'name': 'site1', 'port': 8001, 'db_password': 'Db1-fresh', 'server_name': 'site1.test'}]
SECRETS = [ADMIN_PASSWORD] + [i['db_password'] for i in INSTANCES]
HOSTS = ('node1',)
TIMES: dict[str, float] = {}
# What each package the roles install is for: the command that proves it is there and works.
USES = {
    'unzip': 'unzip -v',                                      # app: lists and unpacks the release archive
    'rsync': 'rsync --version',                               # app: installs the program files of a release
    'curl': 'curl --version',                                 # app: for operators' checks by hand (the roles do not call it)
    'iproute2': 'ss -V',                                      # app preflight / proxy drain: ss
    'mariadb-client': 'mysqldump --version',                  # app: backup and restore (database on another host)
    'mariadb-server': '/usr/sbin/mariadbd --version',         # database
    'python3-pymysql': '/usr/bin/python3 -c "import pymysql"',  # database: community.mysql modules
    'nginx': '/usr/sbin/nginx -v',                            # proxy
}


@pytest.fixture(scope='module')
def lab() -> Iterator[fleet.Fleet]:
    start = time.monotonic()
    fleet.host_image.build()
    TIMES['image_cached_or_built_seconds'] = round(time.monotonic() - start, 1)
    start = time.monotonic()
    with running_fleet(len(HOSTS), MEMORY, LAB, lab=fleet, image='fresh') as running:
        TIMES['boot_fresh_hosts_seconds'] = round(time.monotonic() - start, 1)
        yield running


@pytest.fixture(scope='module')
def release() -> dict[str, str]:
    archive = standin.build()
    return {'app_release_src': str(archive), 'app_release_sha256': standin.sha256_of(archive)}


def deploy_vars(release: dict[str, str]) -> dict[str, Any]:
    return dict(release, app_admin_password=ADMIN_PASSWORD, app_instances=json.loads(json.dumps(INSTANCES)))


def run(lab: fleet.Fleet, extra: dict[str, Any]) -> tuple[int, dict[str, dict[str, int]], str, float]:
    start = time.monotonic()
    proc = lab.playbook(DEPLOY, extra_vars=extra, timeout=1500)
    seconds = time.monotonic() - start
    out = proc.stdout + proc.stderr
    for secret in SECRETS:
        assert secret not in out, 'a password appeared in the ansible-playbook output'
    return proc.returncode, ansible_runner.recap(proc.stdout), out, seconds


def installed(lab: fleet.Fleet, host: str, package: str) -> bool:
    result = lab.exec(host, ['dpkg-query', '-W', '-f=${Status}', package], check=False)
    return result.returncode == 0 and result.stdout.strip() == 'install ok installed'


def http(url: str, host_header: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={'Host': host_header})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_fresh_hosts_have_nothing_the_roles_install(lab):
    packages = fleet.host_image.role_packages()
    assert set(USES) == set(packages), 'a package was added to or removed from the roles: say here what it is for'
    for host in HOSTS:
        assert lab.exec(host, 'systemctl is-system-running').stdout.strip() == 'running'
        missing = [p for p in packages if p != 'iproute2' and not installed(lab, host, p)]
        assert missing == [p for p in packages if p != 'iproute2'], f'{host} already has {set(packages) - set(missing)}'
        assert not installed(lab, host, 'python3-apt') and not installed(lab, host, 'python3-psutil')
        assert lab.exec(host, 'test -e /usr/sbin/mariadbd || test -e /usr/sbin/nginx', check=False).returncode == 1


def test_first_deploy_installs_everything_from_the_local_mirror(lab, release):
    rc, recap, out, seconds = run(lab, deploy_vars(release))
    TIMES['first_deploy_seconds'] = round(seconds, 1)
    assert rc == 0, out[-5000:]
    assert set(recap) == set(HOSTS)
    assert all(r['failed'] == 0 and r['changed'] > 0 for r in recap.values()), recap
    for host in HOSTS:
        for package, command in USES.items():
            assert installed(lab, host, package), f'{package} is not installed on {host}'
            assert lab.exec(host, command, check=False).returncode == 0, f'{package} on {host}: `{command}` fails'
        policy = lab.exec(host, 'apt-cache policy nginx mariadb-server').stdout
        assert f'http://apt-mirror:{fleet.host_image.MIRROR_PORT} ./ Packages' in policy, policy
        sources = lab.exec(host, "grep -rh '^deb' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null").stdout.split('\n')
        assert [s for s in sources if s] == [f'deb [trusted=yes] http://apt-mirror:{fleet.host_image.MIRROR_PORT}/ ./'], sources
        assert lab.exec(host, 'systemctl is-active mariadb nginx anqicms-site1').stdout.split() == ['active'] * 3
        assert lab.exec(host, 'systemctl is-enabled mariadb nginx anqicms-site1').stdout.split() == ['enabled'] * 3


@pytest.mark.parametrize('host', HOSTS)
def test_the_instance_answers_through_nginx(lab, host):
    address = lab.host(host).address
    status, body = http(f'http://{address}/system/api/version/info', 'site1.test')
    assert status == 200, body[:300]
    assert json.loads(body)['data']['version'] == standin.VERSION
    status, body = http(f'http://{address}/', 'site1.test')
    assert status == 200, body[:300]
    row = lab.exec(host, 'mysql -N -e "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = \'anqicms_site1\'"')
    assert row.stdout.strip() == '1'


@pytest.mark.parametrize('host', HOSTS)
def test_memory_facts_runs_on_a_fresh_host_without_psutil(lab, host):
    assert not installed(lab, host, 'python3-psutil')
    assert lab.exec(host, ['/usr/bin/python3', '-c', 'import psutil'], check=False).returncode != 0
    result = lab.run_module(host, 'opsguard.anqicms.memory_facts', {})
    assert not result.get('failed'), result.get('msg')
    facts = result['ansible_facts']['opsguard_memory']
    assert facts['verdict'] in ('ok', 'warning', 'critical')
    assert facts['limit']['bytes'] == MEMORY and facts['limit']['source'] == 'cgroup v1'
    services = json.dumps(facts.get('services'))
    assert 'anqicms-site1' in services and 'mariadb' in services, services[:2000]


def test_second_run_changes_nothing(lab, release):
    rc, recap, out, seconds = run(lab, deploy_vars(release))
    TIMES['rerun_seconds'] = round(seconds, 1)
    assert rc == 0, out[-4000:]
    assert all(r['changed'] == 0 and r['failed'] == 0 for r in recap.values()), ansible_runner.changed_tasks(out)


def test_a_forgotten_package_fails_the_deploy_on_a_fresh_host(lab, release, tmp_path):
    """Without unzip in app_packages (and not on the host), a new release is refused and nothing is replaced."""
    host = HOSTS[-1]
    lab.exec(host, 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -q unzip', timeout=300)
    assert not installed(lab, host, 'unzip')
    upgraded = tmp_path / pathlib.Path(release['app_release_src']).name
    with zipfile.ZipFile(release['app_release_src']) as source, zipfile.ZipFile(upgraded, 'w', zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            archive.writestr(info, source.read(info))
        archive.writestr('RELEASE-NOTES.txt', 'upgrade marker\n')
    extra = deploy_vars({'app_release_src': str(upgraded), 'app_release_sha256': standin.sha256_of(upgraded)})
    extra['app_packages'] = [p for p in USES if p in ('rsync', 'iproute2', 'curl')]
    binary = lab.exec(host, 'sha256sum /opt/anqicms/site1/anqicms').stdout
    start = time.monotonic()
    proc = lab.playbook(APP, extra_vars=extra, limit=host, timeout=1500)
    TIMES['forgotten_package_run_seconds'] = round(time.monotonic() - start, 1)
    out = proc.stdout + proc.stderr
    recap = ansible_runner.recap(proc.stdout)
    assert proc.returncode != 0 and recap[host]['failed'] == 1, out[-4000:]
    assert 'nothing was replaced' in out and 'unzip' in out, out[-4000:]
    assert not installed(lab, host, 'unzip')
    assert lab.exec(host, 'test -e /opt/anqicms/site1/RELEASE-NOTES.txt', check=False).returncode == 1
    assert lab.exec(host, 'sha256sum /opt/anqicms/site1/anqicms').stdout == binary
    status, body = http(f'http://{lab.host(host).address}/system/api/version/info', 'site1.test')
    assert status == 200, body[:300]


def test_record_timings():
    assert {'boot_fresh_hosts_seconds', 'first_deploy_seconds', 'rerun_seconds'} <= set(TIMES), 'run the whole module'
    manifest = fleet.host_image.manifest()
    TIMES.update(manifest['timings'], image_key=manifest['key'], hosts=len(HOSTS), memory_per_host=MEMORY,
                 cores=os.cpu_count() or 0, loadavg_1m=os.getloadavg()[0])
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    TIMINGS.write_text(json.dumps(TIMES, indent=2) + '\n', encoding='utf-8')
    print('fresh hosts timings:', json.dumps(TIMES))
