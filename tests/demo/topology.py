# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The demo topology on a test fleet: one nginx site with N backends sharing one database.

node1 = MariaDB + nginx (site ``www``: backends node2..nodeN port 8001), node2..nodeN = one AnQiCMS
instance ``www`` each, all writing to node1's database. Stopping one backend therefore loses no data
and, drained first, no request.

CLI (used by hacking/demo.sh):
  python3 tests/demo/topology.py inventory LAB OUT   write the inventory for lab LAB to OUT (mode 0600)
  python3 tests/demo/topology.py leak LAB HOST       push HOST's instance into `critical` and keep it leaking slowly
"""
from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [p for p in (str(REPO / 'tests' / 'lab'), str(REPO / 'tests' / 'standin')) if p not in sys.path]

import fleet  # noqa: E402  pylint: disable=wrong-import-position
import standin  # noqa: E402  pylint: disable=wrong-import-position

SITE = 'www'
SERVER_NAME = 'www.demo.test'
PORT = 8001
MIB = 1 << 20
# The app hosts pretend to have this much memory when sizing the instance's MemoryMax, so that a leak makes the
# whole host critical (the host's cgroup limit is lower) before the unit's own limit is reached.
APP_MEMORY_TOTAL = 4096 * MIB


def _secrets_file(state_dir: Path) -> dict[str, str]:
    """Passwords of the fleet, generated once per lab and kept in its state dir (mode 0600)."""
    path = state_dir / 'demo-secrets.json'
    if path.exists():
        return json.loads(path.read_text(encoding='utf-8'))
    values = {'db_password': 'Db-' + secrets.token_urlsafe(12), 'admin_password': 'Adm-' + secrets.token_urlsafe(12)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w', encoding='utf-8') as handle:
        json.dump(values, handle)
    return values


def _common(lab: fleet.Fleet) -> tuple[dict[str, Any], dict[str, Any]]:
    """Connection and release variables of every host, and the instance ``www``."""
    archive = standin.build()
    values = _secrets_file(Path(lab.state_dir))
    instance = {'name': SITE, 'port': PORT, 'db_password': values['db_password'], 'server_name': SERVER_NAME}
    common = {
        'ansible_user': 'root',
        'ansible_ssh_private_key_file': lab.ssh_key,
        'ansible_python_interpreter': '/usr/bin/python3',
        'ansible_ssh_common_args': ('-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR '
                                    '-o ServerAliveInterval=3 -o ServerAliveCountMax=2 -o ConnectTimeout=5'),
        'ansible_control_path_dir': str(Path(lab.state_dir) / 'cp'),
        'ansible_connection': 'ssh',
        'app_release_src': str(archive),
        'app_release_sha256': standin.sha256_of(archive),
        'app_admin_password': values['admin_password'],
    }
    return common, instance


def inventory(lab: fleet.Fleet) -> dict[str, Any]:
    """The inventory (as a dict) of the demo topology on `lab` (2 hosts or more)."""
    if len(lab.hosts) < 2:
        raise ValueError(f'lab {lab.name!r} has {len(lab.hosts)} host(s): the demo topology needs 2 or more (1 database + proxy, N app)')
    common, instance = _common(lab)
    front, apps = lab.hosts[0], lab.hosts[1:]
    app_vars = {
        'app_instances': [instance],
        'app_db_host': front.address,
        'app_memory_total_bytes': APP_MEMORY_TOTAL,
        'app_environment': {'ANQICMS_STANDIN_HOOKS': '1'},
    }
    front_vars = {
        'database_instances': [{'name': SITE, 'db_password': instance['db_password']}],
        'database_app_replicas': len(apps),
        'database_memory_bytes': 512 * MIB,
        'database_user_hosts': ['127.0.0.1', 'localhost'] + [h.address for h in apps],
        'database_extra_settings': {'bind-address': '0.0.0.0'},
        'proxy_sites': [{'name': SITE, 'server_names': [SERVER_NAME], 'backends': [f'{h.address}:{PORT}' for h in apps]}],
    }
    return {'all': {
        'vars': common,
        'children': {
            'fleet': {'hosts': {h.name: {'ansible_host': h.address} for h in lab.hosts}},
            'database': {'hosts': {front.name: front_vars}},
            'proxy': {'hosts': {front.name: {}}},
            'app': {'hosts': {h.name: dict(app_vars) for h in apps}},
        },
    }}


def local_inventory(lab: fleet.Fleet) -> dict[str, Any]:
    """Every host self-contained: MariaDB, one AnQiCMS instance ``www`` and nginx in front of it."""
    common, instance = _common(lab)
    members: dict[str, Any] = {h.name: {} for h in lab.hosts}
    return {'all': {
        'vars': dict(common, app_instances=[instance], app_environment={'ANQICMS_STANDIN_HOOKS': '1'}),
        'children': {
            'fleet': {'hosts': {h.name: {'ansible_host': h.address} for h in lab.hosts}},
            'database': {'hosts': members}, 'app': {'hosts': members}, 'proxy': {'hosts': members},
        },
    }}


def write_inventory(lab: fleet.Fleet, path: str | Path | None = None, local: bool = False) -> str:
    """Write the demo inventory (JSON is valid YAML) with mode 0600 and return its path.

    local=False: the shared-database topology (node1 database + nginx, the others app); local=True: every host
    self-contained (local_inventory).
    """
    target = Path(path) if path else Path(lab.state_dir) / ('local-inventory.yml' if local else 'demo-inventory.yml')
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w', encoding='utf-8') as handle:
        json.dump(local_inventory(lab) if local else inventory(lab), handle, indent=1)
    return str(target)


def hook(lab: fleet.Fleet, host: str, path: str) -> dict[str, Any]:
    """GET a stand-in test hook of the instance on `host` (hooks are on in the demo topology)."""
    url = f'http://{lab.host(host).address}:{PORT}{path}'
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=60) as response:
        return json.loads(response.read())


def make_critical(lab: fleet.Fleet, host: str, available_percent: float = 10.0, leak_mib_per_s: int = 1) -> dict[str, Any]:
    """Allocate in the instance until about `available_percent` of the host's limit is left, then leak slowly."""
    result = lab.run_module(host, 'opsguard.anqicms.memory_facts', {})
    facts = (result.get('ansible_facts') or {}).get('opsguard_memory') or {}
    if result.get('failed') or 'limit' not in facts:
        raise RuntimeError(f'{host}: memory_facts failed ({result.get("msg")}); cannot size the allocation')
    limit, available = int(facts['limit']['bytes']), int(facts['limit']['available_bytes'])
    mib = max(0, (available - int(limit * available_percent / 100)) // MIB)
    held = hook(lab, host, f'/__test/alloc?mib={mib}')
    if leak_mib_per_s > 0:
        hook(lab, host, f'/__test/leak?mib={leak_mib_per_s}&every_ms=1000')
    return {'host': host, 'allocated_mib': mib, 'held': held.get('data'), 'limit_mib': limit // MIB}


def main(argv: list[str]) -> int:
    usage = 'usage: topology.py inventory LAB OUT | leak LAB HOST\n'
    if len(argv) != 3 or argv[0] not in ('inventory', 'leak'):
        sys.stderr.write(usage)
        return 2
    lab = fleet.current(argv[1])
    if lab is None:
        sys.stderr.write(f'lab {argv[1]!r} is not up: bring it up first (tests/lab/fleet.py --name {argv[1]} up --hosts 3)\n')
        return 1
    if argv[0] == 'inventory':
        sys.stdout.write(write_inventory(lab, argv[2]) + '\n')
    else:
        sys.stdout.write(json.dumps(make_critical(lab, argv[2])) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
