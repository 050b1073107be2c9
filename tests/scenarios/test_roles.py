# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Roles app, database and proxy on a fresh host with two instances, in molecule's order.

check mode on fresh hosts -> converge -> idempotence (also after AnQiCMS rewrote its config.json) ->
verify from outside (HTTP through nginx, systemd properties, the process environment, MariaDB variables,
ownership and modes) -> bad inputs (each a clear failure that changes nothing) -> drain / undrain.

The tests run in file order and share one fleet (lab name ``<OPSGUARD_LAB_NAME>-roles``, default ``oglab-roles``).
Timings of the first deploy and of a rerun are printed and written to tests/output/roles_timings.json.
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
DRAIN = REPO / 'tests' / 'roles' / 'drain.yml'
APP = REPO / 'tests' / 'roles' / 'app.yml'   # the app role alone: takeover, upgrade and release refusals are the app role's
TIMINGS = REPO / 'tests' / 'output' / 'roles_timings.json'
LAB = fleet.derived_name('roles')
MEMORY = 1 << 30
MIB = 1 << 20
# One host: a second one with the same inventory ran the same tasks and proved nothing more. Fleets of several hosts
# are the playbooks, monitor and proxy failover scenarios.
HOSTS = ('node1',)

ADMIN_PASSWORD = 'Adm1n-scenario!'
INSTANCES = [
    {'name': 'site1', 'port': 8001, 'db_password': 'Db1-scen<&>"x', 'server_name': 'site1.test'},
    {'name': 'site2', 'port': 8002, 'db_password': 'Db2-scen', 'server_name': 'site2.test',
     'sites': [{'name': 'blog', 'server_name': 'blog.site2.test'}]},
]
SECRETS = [ADMIN_PASSWORD] + [i['db_password'] for i in INSTANCES]
TIMES: dict[str, float] = {}


def expected_budget(total: int, instances: int) -> dict[str, int]:
    """The formula of docs/roles/app.md, written again independently of the role."""
    reserve = max(256 * MIB, int(total * 0.1))
    database = int(total * 0.35)
    each = (total - reserve - database) // instances // MIB * MIB
    return {'database': database, 'max': each, 'high': int(each * 0.9) // MIB * MIB, 'gomemlimit': int(each * 0.8) // MIB * MIB}


def expected_mariadb(database_bytes: int) -> dict[str, int]:
    """docs/roles/database.md: connections from the pools, buffer pool from what is left."""
    sites = sum(1 + len(i.get('sites', [])) for i in INSTANCES)
    max_connections = sites * 20 + 20
    per_connection = 262144 + 262144 + 131072 + 262144 + 299008 + 32768
    pool = (database_bytes - 96 * MIB - max_connections * per_connection) // (64 * MIB) * 64 * MIB
    return {'max_connections': max_connections, 'innodb_buffer_pool_size': pool}


@pytest.fixture(scope='module')
def lab() -> Iterator[fleet.Fleet]:
    with running_fleet(len(HOSTS), MEMORY, LAB, lab=fleet) as running:
        yield running


@pytest.fixture(scope='module')
def release() -> dict[str, str]:
    archive = standin.build()
    return {'app_release_src': str(archive), 'app_release_sha256': standin.sha256_of(archive)}


def base_vars(release: dict[str, str]) -> dict[str, Any]:
    return dict(release, app_admin_password=ADMIN_PASSWORD, app_instances=json.loads(json.dumps(INSTANCES)))


def run(lab: fleet.Fleet, extra: dict[str, Any], check: bool = False, limit: str | None = None,
        playbook: pathlib.Path = DEPLOY) -> tuple[int, dict[str, dict[str, int]], str, float]:
    start = time.monotonic()
    proc = lab.playbook(playbook, extra_vars=extra, check=check, limit=limit, timeout=900)
    seconds = time.monotonic() - start
    out = proc.stdout + proc.stderr
    for secret in SECRETS:
        assert secret not in out, 'a password appeared in the ansible-playbook output'
    recap = ansible_runner.recap(proc.stdout)
    return proc.returncode, recap, out, seconds


def sh(lab: fleet.Fleet, host: str, cmd: str) -> str:
    return lab.exec(host, cmd, timeout=60).stdout.strip()


def snapshot(lab: fleet.Fleet, host: str) -> str:
    """Everything the roles manage on a host, hashed, plus the running PIDs."""
    return sh(lab, host, (
        'for f in /etc/systemd/system/anqicms-*.service /opt/anqicms/*/config.json /opt/anqicms/*/anqicms '
        '/opt/anqicms/*/stop.sh /etc/mysql/mariadb.conf.d/60-anqicms.cnf /etc/nginx/conf.d/anqicms-*.conf; '
        'do [ -e "$f" ] && echo "$f $(sha256sum < "$f" | cut -c1-16) $(stat -c %a:%U "$f")"; done; ls /opt/anqicms; '
        'systemctl show -p MainPID --value anqicms-site1 anqicms-site2 mariadb nginx; ls /etc/nginx/conf.d'))


def http(url: str, host_header: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={'Host': host_header})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_check_mode_on_fresh_hosts(lab, release):
    rc, recap, out, seconds = run(lab, base_vars(release), check=True)
    assert rc == 0, out[-3000:]
    assert set(recap) == set(HOSTS)
    assert all(r['failed'] == 0 and r['changed'] > 0 for r in recap.values()), recap
    for host in HOSTS:
        left = sh(lab, host, 'ls /etc/systemd/system/anqicms-* /opt/anqicms /etc/mysql/mariadb.conf.d/60-anqicms.cnf '
                             '/etc/nginx/conf.d/anqicms-* 2>/dev/null; true')
        assert left == '', f'check mode wrote on {host}: {left}'


def test_converge(lab, release):
    rc, recap, out, seconds = run(lab, base_vars(release))
    TIMES['first_deploy_seconds'] = round(seconds, 1)
    assert rc == 0, out[-4000:]
    assert all(r['failed'] == 0 and r['changed'] > 0 for r in recap.values()), recap


def test_rerun_reports_no_change_also_after_the_app_rewrote_config_json(lab, release):
    """One rerun of the whole stack changes nothing: for site2 right after the converge, for site1 after AnQiCMS itself
    rewrote its config.json (as 3.5.8 does at start with MYSQL_* in its environment)."""
    host, inst = 'node1', INSTANCES[0]
    directory = '/opt/anqicms/' + inst['name']
    before = sh(lab, host, f'stat -c %Y.%i {directory}/config.json; sleep 1.1')
    env = (f"MYSQL_HOST=127.0.0.1\nMYSQL_PORT=3306\nMYSQL_DATABASE=anqicms_{inst['name']}\n"
           f"MYSQL_USER=anqicms_{inst['name']}\nMYSQL_PASSWORD='{inst['db_password']}'\n")
    lab.exec(host, 'umask 077; cat > /run/anqicms-rewrite.env; chown anqicms /run/anqicms-rewrite.env', input=env)
    sh(lab, host, f"systemctl stop anqicms-{inst['name']}; cd {directory} && "
                  f"runuser -u anqicms -- sh -c 'set -a; . /run/anqicms-rewrite.env; exec timeout -s TERM 8 ./anqicms -port {inst['port']}' "
                  f">/dev/null 2>&1; rm -f /run/anqicms-rewrite.env; systemctl start anqicms-{inst['name']}")
    after = sh(lab, host, f'stat -c %Y.%i {directory}/config.json')
    assert after != before, 'AnQiCMS did not rewrite config.json'
    data = json.loads(sh(lab, host, f'cat {directory}/config.json'))
    assert data['mysql']['password'] == inst['db_password']

    rc, recap, out, seconds = run(lab, base_vars(release))
    TIMES['rerun_seconds'] = round(seconds, 1)
    assert rc == 0, out[-4000:]
    assert set(recap) == set(HOSTS), recap
    assert all(r['changed'] == 0 and r['failed'] == 0 for r in recap.values()), ansible_runner.changed_tasks(out)


@pytest.mark.parametrize('host', HOSTS)
def test_verify_from_outside(lab, host):
    address = lab.host(host).address
    for inst in INSTANCES:
        status, body = http(f'http://{address}/system/api/version/info', inst['server_name'])
        assert status == 200 and json.loads(body)['data']['version'] == standin.VERSION
        status, body = http(f'http://{address}/', inst['server_name'])
        assert status == 200, f"{inst['server_name']} via nginx on {host}: {status} (not installed?)"
        for site in inst.get('sites', []):
            status, body = http(f'http://{address}/system/api/version/info', site['server_name'])
            assert status == 200

    budget = expected_budget(MEMORY, len(INSTANCES))
    for inst in INSTANCES:
        unit = f"anqicms-{inst['name']}.service"
        props = dict(line.split('=', 1) for line in sh(lab, host, (
            f'systemctl show {unit} -p MemoryHigh,MemoryMax,KillSignal,TimeoutStopUSec,Restart,User,OOMScoreAdjust,'
            'NoNewPrivileges,ProtectSystem,PrivateTmp,ReadWritePaths,ActiveState,MainPID')).splitlines())
        assert props['ActiveState'] == 'active'
        assert int(props['MemoryMax']) == budget['max']
        assert int(props['MemoryHigh']) == budget['high']
        assert props['KillSignal'] == '15' and props['Restart'] == 'on-failure' and props['TimeoutStopUSec'] == '30s'
        assert props['User'] == 'anqicms' and int(props['OOMScoreAdjust']) > 0
        assert props['NoNewPrivileges'] == 'yes' and props['ProtectSystem'] == 'strict' and props['PrivateTmp'] == 'yes'
        assert props['ReadWritePaths'] == f"/opt/anqicms/{inst['name']}"
        pid = props['MainPID']
        environ = sh(lab, host, f"tr '\\0' '\\n' < /proc/{pid}/environ")
        assert f"GOMEMLIMIT={budget['gomemlimit']}" in environ.splitlines()
        assert budget['gomemlimit'] < budget['high'] < budget['max']
        assert sh(lab, host, f'ps -o user= -p {pid}') == 'anqicms'
        assert sh(lab, host, f'cat /sys/fs/cgroup/memory/system.slice/{unit}/memory.limit_in_bytes') == str(budget['max'])
        modes = sh(lab, host, f"stat -c '%n %a %U %G' /opt/anqicms/{inst['name']} /opt/anqicms/{inst['name']}/config.json "
                              f"/etc/systemd/system/{unit}").splitlines()
        assert modes == [f"/opt/anqicms/{inst['name']} 750 anqicms anqicms",
                         f"/opt/anqicms/{inst['name']}/config.json 600 anqicms anqicms",
                         f'/etc/systemd/system/{unit} 644 root root']
        assert 'systemctl stop ' + unit in sh(lab, host, f"cat /opt/anqicms/{inst['name']}/stop.sh")

    mariadb = expected_mariadb(budget['database'])
    row = sh(lab, host, 'mysql -N -e "SELECT @@max_connections, @@innodb_buffer_pool_size, @@performance_schema, @@sort_buffer_size"')
    assert row.split() == [str(mariadb['max_connections']), str(mariadb['innodb_buffer_pool_size']), '0', '262144']
    assert sh(lab, host, "stat -c '%a %U' /etc/mysql/mariadb.conf.d/60-anqicms.cnf") == '644 root'
    grants = sh(lab, host, "mysql -N -e \"SHOW GRANTS FOR 'anqicms_site2'@'127.0.0.1'\"")
    assert '`anqicms_site2_blog`.*' in grants and '`anqicms_site1`' not in grants


def test_takeover_and_upgrade_keep_user_data(lab, release, tmp_path):
    """A manual install's cron lines are disabled; a new release replaces program files only."""
    host, directory = 'node1', '/opt/anqicms/site1'
    lab.exec(host, 'cat > /etc/cron.d/anqicms-manual', input=(
        '* * * * * root /opt/anqicms/site1/start.sh >/dev/null 2>&1\n'
        '0 3 1 * * root cd /opt/anqicms/site1 && ./stop.sh\n'
        '* * * * * root /opt/anqicms/site10/start.sh\n'))
    lab.exec(host, 'mkdir -p /var/spool/cron/crontabs && cat > /var/spool/cron/crontabs/root && chmod 600 /var/spool/cron/crontabs/root',
             input='*/5 * * * * cd /opt/anqicms/site1/ ; sh start.sh\n')
    sh(lab, host, f'echo custom > {directory}/template/default/custom.html; echo edited >> {directory}/template/default/index.html; '
                  f'mkdir -p {directory}/public/uploads {directory}/data/backup; echo up > {directory}/public/uploads/u.txt; '
                  f'echo dump > {directory}/data/backup/b.sql')
    kept = sh(lab, host, f'cd {directory} && sha256sum config.json template/default/index.html template/default/custom.html '
                         'public/uploads/u.txt data/backup/b.sql')
    pid_before = sh(lab, host, 'systemctl show -p MainPID --value anqicms-site1')

    upgraded = tmp_path / pathlib.Path(release['app_release_src']).name
    with zipfile.ZipFile(release['app_release_src']) as source, zipfile.ZipFile(upgraded, 'w', zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            data = b'new release template\n' if info.filename == 'template/default/index.html' else source.read(info)
            archive.writestr(info, data)
        archive.writestr('RELEASE-NOTES.txt', 'upgrade marker\n')
    extra = base_vars({'app_release_src': str(upgraded), 'app_release_sha256': standin.sha256_of(upgraded)})

    rc, recap, out, seconds = run(lab, extra, limit=host, playbook=APP)
    assert rc == 0, out[-4000:]
    assert 'disabled start.sh/stop.sh cron lines of site1' in out and '/etc/cron.d/anqicms-manual' in out
    cron = sh(lab, host, 'cat /etc/cron.d/anqicms-manual /var/spool/cron/crontabs/root').splitlines()
    assert cron[0].startswith('# disabled by opsguard.anqicms.app, anqicms-site1.service runs this instance: * * * * * root /opt/anqicms/site1/start.sh')
    assert cron[1].startswith('# disabled by opsguard.anqicms.app') and cron[1].endswith('cd /opt/anqicms/site1 && ./stop.sh')
    assert cron[2] == '* * * * * root /opt/anqicms/site10/start.sh', 'another instance\'s line was touched'
    assert cron[3].startswith('# disabled by opsguard.anqicms.app') and cron[3].endswith('sh start.sh')
    assert sh(lab, host, f'cat {directory}/RELEASE-NOTES.txt') == 'upgrade marker'
    assert sh(lab, host, f'cd {directory} && sha256sum config.json template/default/index.html template/default/custom.html '
                         'public/uploads/u.txt data/backup/b.sql') == kept
    assert sh(lab, host, 'systemctl show -p MainPID --value anqicms-site1') != pid_before, 'not restarted after the upgrade'
    status, body = http(f'http://{lab.host(host).address}/system/api/version/info', 'site1.test')
    assert status == 200, body

    rc, recap, out, seconds = run(lab, extra, limit=host, playbook=APP)
    assert rc == 0 and recap[host]['changed'] == 0, ansible_runner.changed_tasks(out)
    # node1 keeps the new release: the tests after this one refuse bad input before any release step, or drain nginx.


@pytest.mark.parametrize('case', ['wrong checksum', 'port held by another process', 'port used twice', 'budget overflow',
                                  'missing admin password', 'default admin password', 'missing db password', 'bad log level',
                                  'instance that cannot be named'])
def test_bad_input_fails_clearly_and_changes_nothing(lab, release, case):
    host = 'node1'
    extra = base_vars(release)
    expected: list[str]
    if case == 'wrong checksum':
        extra['app_release_sha256'] = '0' * 64
        expected = ['release archive', 'expected ' + '0' * 64, 'nothing was replaced', 'Fix:']
    elif case == 'port held by another process':
        extra['app_instances'].append({'name': 'site3', 'port': 3306, 'db_password': 'Db3-scen'})
        expected = ['port clash on node1', 'site3: port 3306 is held by', 'mariadbd', 'Fix:']
    elif case == 'port used twice':
        extra['app_instances'].append({'name': 'site3', 'port': 8001, 'db_password': 'Db3-scen'})
        expected = ['port clash on node1', 'site3', 'must be distinct', 'Fix:']
    elif case == 'budget overflow':
        extra['app_instances'][0]['memory_max_bytes'] = 2 << 30
        expected = ['memory budget overflow on node1', 'total 1024 MiB (cgroup v1)', 'site1=2048', 'Fix:']
    elif case == 'missing admin password':
        del extra['app_admin_password']
        expected = ['app_admin_password is missing', 'Fix:']
    elif case == 'default admin password':
        extra['app_admin_password'] = '123456'
        expected = ['known default 123456', 'Fix:']
    elif case == 'bad log level':
        extra['app_log_level'] = 'x' * 40
        expected = ['app_log_level must be a log level word', 'Fix:']
    elif case == 'instance that cannot be named':
        extra['app_instances'].append({'name': 'site3', 'port': 'http', 'db_password': 'Db3-scen'})
        expected = ["app_instances item 3 (site3): port='http' is not a whole number from 1 to 65535"]
    else:
        del extra['app_instances'][1]['db_password']
        expected = ["instances ['site2']", 'have no db_password', 'Fix:']
    before = snapshot(lab, host)
    # The release is the app role's: a wrong checksum is refused there, so MariaDB's converge before it is skipped.
    rc, recap, out, seconds = run(lab, extra, limit=host, playbook=APP if case == 'wrong checksum' else DEPLOY)
    assert rc != 0 and recap[host]['failed'] == 1, out[-3000:]
    assert recap[host]['changed'] == 0, ansible_runner.changed_tasks(out)
    for fragment in expected:
        assert fragment in out, f'{case}: {fragment!r} missing from:\n{out[-3000:]}'
    assert 'Db3-scen' not in out, 'a password appeared in the ansible-playbook output'
    assert snapshot(lab, host) == before


def test_drain_and_undrain_one_backend(lab):
    # The other backend of the site is the host's second instance (site2 answers the same version endpoint).
    host, other = lab.host('node1'), '127.0.0.1:8002'
    sites = [{'name': 'site1', 'server_names': ['site1.test'], 'backends': ['127.0.0.1:8001', other]}]
    common = {'proxy_sites': sites, 'proxy_drain_site': 'site1', 'proxy_drain_backend': '127.0.0.1:8001'}
    conf = '/etc/nginx/conf.d/anqicms-site1.conf'

    rc, dummy, out, seconds = run(lab, dict(common, drain_action='undrain'), limit='node1', playbook=DRAIN)
    assert rc == 0, out[-3000:]
    rc, dummy, out, seconds = run(lab, dict(common, drain_action='drain'), limit='node1', playbook=DRAIN)
    assert rc == 0, out[-3000:]
    text = sh(lab, 'node1', f'cat {conf}')
    assert 'server 127.0.0.1:8001 max_fails=1 fail_timeout=10s down;' in text
    assert f'server {other} max_fails=1 fail_timeout=10s;' in text
    for dummy in range(4):
        status, body = http(f'http://{host.address}/system/api/version/info', 'site1.test')
        assert status == 200
    assert sh(lab, 'node1', "ss -Htnp state established dst 127.0.0.1:8001 | grep -c '\"nginx\"' || true") == '0'

    rc, dummy, out, seconds = run(lab, dict(common, proxy_drain_backend=other, drain_action='drain'),
                                  limit='node1', playbook=DRAIN)
    assert rc != 0 and 'another backend must stay in rotation' in out, out[-3000:]
    assert f'server {other} max_fails=1 fail_timeout=10s;' in sh(lab, 'node1', f'cat {conf}')

    rc, dummy, out, seconds = run(lab, dict(common, drain_action='undrain'), limit='node1', playbook=DRAIN)
    assert rc == 0, out[-3000:]
    assert ' down;' not in sh(lab, 'node1', f'cat {conf}')


def test_record_timings():
    assert 'first_deploy_seconds' in TIMES and 'rerun_seconds' in TIMES, 'run the whole module to measure'
    TIMES.update(hosts=len(HOSTS), instances_per_host=len(INSTANCES), memory_per_host=MEMORY, cores=os.cpu_count() or 0,
                 loadavg_1m=os.getloadavg()[0])
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    TIMINGS.write_text(json.dumps(TIMES, indent=2) + '\n', encoding='utf-8')
    print('roles deploy timings:', json.dumps(TIMES))
