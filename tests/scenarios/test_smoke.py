"""Smoke scenario: the problem this collection exists to solve.

Two stand-in AnQiCMS instances on node1 (two directories, two ports) and one on node2, each
web-installed against its host's MariaDB. The shipped-style ``stop.sh`` run for *one* instance on
node1 SIGKILLs both instances there; node2 keeps serving.
"""
from __future__ import annotations

import urllib.error
import urllib.request

import standin
from ansible_collections.opsguard.anqicms.tests.utils.wait import poll

DB_PASSWORD = 'smoke-db-pw-1'
ADMIN_PASSWORD = 'smoke-admin-pw'
INSTANCES = (('node1', '/opt/anqicms-a', 8001), ('node1', '/opt/anqicms-b', 8002), ('node2', '/opt/anqicms-a', 8001))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait(predicate, timeout: float = 20.0) -> bool:
    return poll(predicate, timeout, 0.2)


def _pids(fleet, host) -> list[int]:
    out = fleet.exec(host, 'pgrep -x anqicms || true').stdout.split()
    return sorted(int(p) for p in out)


def test_stock_stop_sh_kills_every_instance_on_the_host(lab_fleet):
    fleet = lab_fleet
    archive = standin.build()
    for name in ('node1', 'node2'):
        host = fleet.host(name)
        fleet.exec(host, 'pkill -9 -x anqicms || true; rm -rf /opt/anqicms-a /opt/anqicms-b')
        fleet.exec(host, "mysql -e \"CREATE USER IF NOT EXISTS 'smoke'@'localhost' IDENTIFIED BY '%s'; "
                         "GRANT ALL ON *.* TO 'smoke'@'localhost';\"" % DB_PASSWORD)

    for name, directory, port in INSTANCES:
        host = fleet.host(name)
        standin.deploy(lambda cmd, h=host: fleet.exec(h, cmd), lambda src, dst, h=host: fleet.put(h, src, dst),
                       directory, archive=archive)
        # Started like start.sh does (start.sh itself refuses a second instance on the host), over real SSH so
        # the process lives in the host's own session and cgroup.
        fleet.ssh(host, 'cd %s && setsid -f ./anqicms -port %d >> running.log 2>&1 < /dev/null' % (directory, port))
        base = 'http://%s:%d' % (host.address, port)
        assert _wait(lambda b=base: _answers(b + '/install')), '%s did not come up on %s' % (directory, base)
        database = 'smoke_%s_%d' % (name, port)
        standin.web_install(base, db_host='127.0.0.1', db_port=3306, database=database, user='smoke',
                            password=DB_PASSWORD, admin_password=ADMIN_PASSWORD)
        assert standin.version(base)['data']['version'] == '3.5.8'

    node1, node2 = fleet.host('node1'), fleet.host('node2')
    assert len(_pids(fleet, node1)) == 2
    assert len(_pids(fleet, node2)) == 1

    # The operator wants to stop instance A only, and runs its stop.sh.
    fleet.exec(node1, 'cd /opt/anqicms-a && ./stop.sh')

    assert _wait(lambda: not _pids(fleet, node1), timeout=5), 'stop.sh left instances running on node1'
    assert not _answers('http://%s:8002/system/api/version/info' % node1.address), 'instance B survived stop.sh'
    # Both were SIGKILLed: nothing had a chance to log a shutdown.
    assert _answers('http://%s:8001/system/api/version/info' % node2.address), 'node2 was affected'
    assert len(_pids(fleet, node2)) == 1
    fleet.exec(node2, 'pkill -9 -x anqicms || true')
