"""Scenario tests: the collection on a real multi-host test fleet.

Brings the test-fleet tool (tests/lab) and the AnQiCMS stand-in (tests/standin) onto
sys.path and loads the fleet's pytest fixtures. Every test here runs as root.

``demo_site`` (session): the demo topology (tests/demo/topology.py) deployed once on 4 hosts -- node1 MariaDB + nginx
(site www), node2..node4 AnQiCMS www with their database on node1, and a restore account on node1 for node2 -- shared by
the playbooks, proxy failover and remote restore scenarios, in that order (``SHARED_FLEET_FILES``). Each of them asks
``demo_site.ready()`` first: every instance active, enabled and in rotation, no emergency_stop record left, and no test
failed since the last check; else the reset (drained marks and records removed, the deploy again, the instances
restarted, which frees what a test allocated in them).
Under pytest-xdist (``--dist loadfile``) the scheduler of ``pytest_xdist_make_scheduler`` below gives those three files
to one worker as one unit, and every other file whole to a worker: the three share one fleet and one deploy.
"""
from __future__ import annotations

import json
import os
import pathlib
import secrets
import sys
from typing import Any, Iterator

import pytest
from xdist.scheduler import LoadFileScheduling

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# tests/lab, tests/standin, and .collections for the shared helpers (ansible_collections.opsguard.anqicms.tests.utils).
for _sub in ('lab', 'standin', os.path.join('..', '.collections')):
    _path = os.path.normpath(os.path.join(TESTS, _sub))
    if _path not in sys.path:
        sys.path.insert(0, _path)


def pytest_configure(config: pytest.Config) -> None:
    """Load the fleet fixtures once per session, however many test directories ask for them."""
    if not config.pluginmanager.has_plugin('pytest_plugin'):
        config.pluginmanager.import_plugin('pytest_plugin')


REPO = pathlib.Path(TESTS).parent
# The files that share demo_site, in the order they run on it (the longest first, as tests/lab/pytest_plugin.py orders).
SHARED_FLEET_FILES = ('tests/scenarios/test_playbooks.py', 'tests/scenarios/test_proxy_failover.py',
                      'tests/scenarios/test_remote_restore.py')
SHARED_GROUP = 'demo-site'
DEMO_HOSTS, DEMO_MEMORY = 4, '1536M'
DRAINED_DIR = '/etc/nginx/opsguard-anqicms/drained'
RECORDS_DIR = '/var/lib/opsguard/emergency_stop'


def scheduling_unit(nodeid: str) -> str:
    """What goes whole to one pytest-xdist worker: the test's file, or SHARED_GROUP for the files that share demo_site."""
    path = nodeid.split('::', 1)[0]
    return SHARED_GROUP if path in SHARED_FLEET_FILES else path


class SharedFleetScheduling(LoadFileScheduling):  # pylint: disable=too-few-public-methods
    """pytest-xdist's ``loadfile`` scheduling, with the files of SHARED_FLEET_FILES as one unit."""

    def _split_scope(self, nodeid: str) -> str:
        return scheduling_unit(nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """SharedFleetScheduling for ``--dist loadfile`` (None for other modes: xdist's own scheduler)."""
    return SharedFleetScheduling(config, log) if config.getvalue('dist') == 'loadfile' else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the fleet scenarios with a clear reason when not root (the fleet needs namespaces)."""
    del config
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason='scenario tests build a test fleet and need root')
        for item in items:
            item.add_marker(skip)


class DemoSite:
    """The deployed demo topology: ``lab`` (the fleet), ``inventory`` (its path, mode 0600), ``restore_password`` (of
    the account node2 restores with), ``db_address`` (node1's)."""

    def __init__(self, lab: Any, topology: Any, session: pytest.Session) -> None:
        self.lab = lab
        self.session = session
        self.failures_seen = session.testsfailed
        self.restore_password = 'Rst-' + secrets.token_urlsafe(12)
        self.db_address = lab.hosts[0].address
        self.apps = [h.name for h in lab.hosts[1:]]
        inventory = topology.inventory(lab)
        database = inventory['all']['children']['database']['hosts'][lab.hosts[0].name]
        database['database_restore_account'] = {'password': self.restore_password, 'hosts': [lab.hosts[1].address]}
        self.inventory = str(pathlib.Path(lab.state_dir) / 'demo-site-inventory.yml')
        fd = os.open(self.inventory, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            json.dump(inventory, handle, indent=1)

    def deploy(self) -> None:
        """playbooks/deploy.yml on the whole fleet (tests/scenarios/fleet_playbooks.py); fails the test on an error."""
        import fleet_playbooks  # pylint: disable=import-outside-toplevel,import-error

        run = fleet_playbooks.playbook(self.lab, self.inventory, 'deploy', {}, pathlib.Path(self.lab.state_dir), timeout=1800)
        assert run.rc == 0, run.out[-4000:]

    def ready(self) -> None:
        """Every host on the network; then, when a test failed since the last call or an instance is not active and
        enabled, a backend is drained or an emergency_stop record is left: the reset (marks and records removed, the
        deploy again -- it starts and enables the instances and renders nginx without the marks --, every instance
        restarted, which frees what a test allocated in it, and answering again)."""
        for host in self.lab.hosts:
            self.lab.heal(host.name)
        failed, self.failures_seen = self.session.testsfailed > self.failures_seen, self.session.testsfailed
        states = [self.lab.exec(h, 'systemctl is-active anqicms-www.service; systemctl is-enabled anqicms-www.service; '
                                   f'ls -A {RECORDS_DIR} 2>/dev/null || true', check=False, timeout=30).stdout.split()
                  for h in self.apps]
        marks = self.lab.exec(self.lab.hosts[0].name, f'ls -A {DRAINED_DIR} 2>/dev/null || true', timeout=30).stdout.split()
        if not failed and not marks and all(state == ['active', 'enabled'] for state in states):
            return
        self.lab.exec(self.lab.hosts[0].name, f'rm -f {DRAINED_DIR}/*', timeout=30)
        for host in self.apps:
            self.lab.exec(host, f'rm -f {RECORDS_DIR}/*', timeout=30)
        self.deploy()
        for host in self.apps:
            self.lab.exec(host, 'systemctl restart anqicms-www.service && for i in $(seq 60); do '
                                'curl -fs -m 2 -o /dev/null http://127.0.0.1:8001/system/api/version/info && exit 0; sleep 1; '
                                'done; exit 1', timeout=120)


@pytest.fixture(scope='session')
def demo_site(request: pytest.FixtureRequest) -> Iterator[DemoSite]:
    """The demo topology on DEMO_HOSTS hosts, deployed once per session (per worker under xdist)."""
    sys.path.insert(0, os.path.join(TESTS, 'demo'))
    import fleet  # pylint: disable=import-outside-toplevel,import-error
    import topology  # pylint: disable=import-outside-toplevel,import-error
    from ansible_collections.opsguard.anqicms.tests.utils.lab import running_fleet  # pylint: disable=import-outside-toplevel

    with running_fleet(DEMO_HOSTS, DEMO_MEMORY, fleet.derived_name('demo'), lab=fleet) as lab:
        site = DemoSite(lab, topology, request.session)
        site.deploy()
        yield site
