# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test) of the fleet playbooks on the demo topology (tests/demo/topology.py).

1. The headline: steady reads and writes through nginx to two backends sharing one database; stop one backend
   (a) the stock way, `pgrep -x anqicms && pkill -9 anqicms` (AnQiCMS's stop.sh), and
   (b) with `emergency_stop` (opsguard_stop_instances=node2:www), then `recover`.
   Counted: failed requests and acknowledged-but-missing writes, per round.
2. Wall time of memory_check and emergency_stop over 3 and 10 hosts, with 5 and 10 forks.

Traffic: 8 threads, 30 % writes, 50 % slow posts (1 s, in flight when the backend goes away), the rest reads.
Run as root: python3 tests/bench/bench_playbooks.py [--rounds 3] [--sizes 3 10] [--no-timings] [--name pbbench]
Prints JSON; docs/playbooks.md ("Measured") records the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tests' / 'demo'))
import topology  # noqa: E402  pylint: disable=wrong-import-position
import traffic  # noqa: E402  pylint: disable=wrong-import-position

fleet = topology.fleet


def playbook(lab: Any, inventory: str, name: str, extra: dict[str, Any], forks: int = 5) -> tuple[int, float, str]:
    env = lab.ansible_env()
    env.update({'ANSIBLE_INVENTORY': inventory, 'ANSIBLE_FORKS': str(forks)})
    with tempfile.TemporaryDirectory(dir=lab.state_dir) as tmp:
        vars_file = Path(tmp) / 'vars.json'
        vars_file.write_text(json.dumps(dict({'opsguard_report_dir': tmp}, **extra)), encoding='utf-8')
        start = time.monotonic()
        proc = subprocess.run([str(REPO / '.venv' / 'bin' / 'ansible-playbook'), '-i', inventory, str(REPO / 'playbooks' / f'{name}.yml'),
                               '-e', f'@{vars_file}'], capture_output=True, text=True, env=env, timeout=1200, check=False, cwd=tmp)
        return proc.returncode, round(time.monotonic() - start, 2), proc.stdout[-3000:]


def under_traffic(lab: Any, action: Callable[[], None], settle: float = 5) -> dict[str, Any]:
    front = lab.hosts[0]
    load = traffic.Traffic(f'http://{front.address}', topology.SERVER_NAME, threads=8, interval=0.05, duration=600,
                           slow_ratio=0.5).start()
    time.sleep(settle)
    action()
    time.sleep(settle)
    result = load.stop()

    def run_sql(query: str) -> str:
        return lab.exec(front.name, ['mysql', '-N', '-B', '-e', query], timeout=60).stdout
    missing = traffic.missing_ids(result['acknowledged_ids'], run_sql)
    return {'requests': result['requests'], 'writes': result['writes'], 'failed': result['failed'],
            'acknowledged_writes': result['acknowledged_writes'], 'missing_writes': len(missing), 'seconds': result['seconds'],
            'failed_by_kind': {k: sum(1 for f in result['failures'] if f['kind'] == k) for k in ('read', 'write', 'slow')},
            'first_failures': [f['kind'] + ' ' + f['error'][:80] for f in result['failures'][:3]]}


def wait_active(lab: Any, host: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = lab.exec(host, 'curl -s -m 2 http://127.0.0.1:8001/system/api/version/info || true', timeout=10).stdout
        if '"code":0' in out:
            return
        time.sleep(1)
    raise RuntimeError(f'{host}: the instance did not answer within {timeout} s after the stop')


def headline(lab: Any, inventory: str, rounds: int) -> dict[str, Any]:
    stock, ours = [], []
    for dummy in range(rounds):
        stock.append(under_traffic(lab, lambda: lab.exec('node2', 'pgrep -x anqicms >/dev/null && pkill -9 anqicms', timeout=30)))
        wait_active(lab, 'node2')   # systemd (Restart=on-failure) brings it back
        time.sleep(3)

        def graceful() -> None:
            rc, dummy, out = playbook(lab, inventory, 'emergency_stop', {'opsguard_stop_instances': ['node2:www']})
            if rc:
                raise RuntimeError('emergency_stop failed:\n' + out)
            rc, dummy, out = playbook(lab, inventory, 'recover', {})
            if rc:
                raise RuntimeError('recover failed:\n' + out)
        ours.append(under_traffic(lab, graceful))
        time.sleep(3)
    return {'stock_pkill9': stock, 'emergency_stop_then_recover': ours}


def timings(lab: Any, inventory: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for forks in (5, 10):
        rc, seconds, text = playbook(lab, inventory, 'memory_check', {}, forks)
        if rc:
            raise RuntimeError('memory_check failed:\n' + text)
        out[f'memory_check_forks{forks}_s'] = seconds
        rc, seconds, text = playbook(lab, inventory, 'emergency_stop', {'opsguard_stop_instances': ['node2:www']}, forks)
        if rc:
            raise RuntimeError('emergency_stop failed:\n' + text)
        out[f'emergency_stop_forks{forks}_s'] = seconds
        rc, dummy, text = playbook(lab, inventory, 'recover', {}, forks)
        if rc:
            raise RuntimeError('recover failed:\n' + text)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--sizes', type=int, nargs='+', default=[3, 10])
    parser.add_argument('--name', default='pbbench')
    parser.add_argument('--no-timings', action='store_true', help='only the headline (3 hosts)')
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.stderr.write('the benchmark builds a test fleet: run it as root\n')
        return 1
    result: dict[str, Any] = {'machine': {'cpus': os.cpu_count(), 'kernel': platform.release()}, 'sizes': {}}
    for size in args.sizes:
        lab = fleet.up(size, '1536M', name=args.name)
        try:
            inventory = topology.write_inventory(lab)
            start = time.monotonic()
            rc, dummy, text = playbook(lab, inventory, 'deploy', {})
            if rc:
                raise RuntimeError('deploy failed:\n' + text)
            entry: dict[str, Any] = {'deploy_s': round(time.monotonic() - start, 1)}
            if not args.no_timings:
                entry.update(timings(lab, inventory))
            if size == 3:
                result['headline'] = headline(lab, inventory, args.rounds)
                sys.stderr.write(json.dumps(result['headline']) + '\n')
            result['sizes'][str(size)] = entry
            sys.stderr.write(json.dumps({str(size): entry}) + '\n')
        finally:
            fleet.down(args.name)
    sys.stdout.write(json.dumps(result, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
