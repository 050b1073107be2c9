# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of opsguard.anqicms.graceful_stop.

1. Overhead: time to stop a stand-in HTTP server (exits at once on SIGTERM) with
   a) a bare SIGTERM + wait for the exit (the baseline),
   b) the module logic in-process: resolve by exe, snapshot the tree, prove, signal through a pidfd,
      wait, confirm the port is released,
   c) the module as a process (interpreter start and imports included, as Ansible runs it on a host).
   Rounds alternate a/b/c on identical targets; overhead = median(b or c) - median(a).
2. Escalation: a target ignoring SIGTERM with timeout T; lateness = SIGKILL time - T.

Usage: PYTHONPATH=/work/main/.collections .venv/bin/python tests/bench/bench_graceful_stop.py [--rounds N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from ansible_collections.opsguard.anqicms.plugins.module_utils import procfs, sockets, stopping, targets
from ansible_collections.opsguard.anqicms.tests.utils.ports import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
STAND_IN = os.path.join(ROOT, 'tests', 'integration', 'targets', 'graceful_stop', 'files', 'stand_in.py')
MODULE = os.path.join(ROOT, 'plugins', 'modules', 'graceful_stop.py')


def start(exe: str, *extra: str) -> tuple:
    port = free_port()
    proc = subprocess.Popen([exe, STAND_IN, '--port', str(port)] + list(extra), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError('stand-in did not start')


def baseline(proc: subprocess.Popen, port: int) -> float:
    fd = os.pidfd_open(proc.pid)
    t0 = time.perf_counter()
    os.kill(proc.pid, signal.SIGTERM)
    select.select([fd], [], [], 10)
    elapsed = time.perf_counter() - t0
    os.close(fd)
    proc.wait()
    return elapsed


def in_process(exe: str, proc: subprocess.Popen, port: int) -> float:
    t0 = time.perf_counter()
    found = targets.resolve_target(exe=exe)
    members = procfs.snapshot_tree(found['identity'], True)
    ports = sockets.listening_ports(sockets.tcp_table(sockets.TCP_LISTEN, found['identity'].pid),
                                    set().union(*[sockets.socket_inodes(m.pid) for m in members]))
    report = stopping.stop_processes(members, signal.SIGTERM, 10, True)
    released = sockets.wait_port_released(ports, 5)
    elapsed = time.perf_counter() - t0
    assert report['outcome'] == 'stopped_gracefully' and released and ports == [port], (report, ports)
    proc.wait()
    return elapsed


def as_process(exe: str, proc: subprocess.Popen, port: int, workdir: str) -> float:
    args = os.path.join(workdir, 'args.json')
    with open(args, 'w') as f:
        json.dump({'ANSIBLE_MODULE_ARGS': {'exe': exe, 'timeout': 10}}, f)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, '.collections'))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, MODULE, args], env=env, capture_output=True, text=True, timeout=60, check=False)
    elapsed = time.perf_counter() - t0
    result = json.loads(out.stdout)
    assert result.get('outcome') == 'stopped_gracefully', result
    proc.wait()
    return elapsed


def python_startup(workdir: str) -> float:
    """Interpreter start with the module's imports but no work (to separate fixed cost from the stop)."""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, '.collections'))
    code = ('import ansible.module_utils.basic\n'
            'from ansible_collections.opsguard.anqicms.plugins.module_utils import '
            'bounds, diagnostics, procfs, sockets, stopping, targets, watchdogs\n')
    t0 = time.perf_counter()
    subprocess.run([sys.executable, '-c', code], env=env, check=True, timeout=60)
    return time.perf_counter() - t0


def summary(values: list) -> dict:
    ms = sorted(v * 1000 for v in values)
    return {'n': len(ms), 'median_ms': round(statistics.median(ms), 2), 'min_ms': round(ms[0], 2),
            'p90_ms': round(ms[int(0.9 * (len(ms) - 1))], 2), 'max_ms': round(ms[-1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--rounds', type=int, default=20)
    parser.add_argument('--escalation-rounds', type=int, default=5)
    parser.add_argument('--timeout', type=float, default=1.0)
    parser.add_argument('--json')
    opts = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix='gs-bench-')
    exe = os.path.join(workdir, 'anqicms')
    shutil.copy(os.path.realpath(sys.executable), exe)
    times: dict = {'baseline': [], 'in_process': [], 'module_process': [], 'python_startup': []}
    try:
        for dummy in range(opts.rounds):
            times['baseline'].append(baseline(*start(exe)))
            times['in_process'].append(in_process(exe, *start(exe)))
            times['module_process'].append(as_process(exe, *start(exe), workdir))
            times['python_startup'].append(python_startup(workdir))
        late = []
        for dummy in range(opts.escalation_rounds):
            proc, dummy_port = start(exe, '--ignore-term')
            ident = procfs.read_identity(proc.pid)
            report = stopping.stop_processes([ident], signal.SIGTERM, opts.timeout, True)
            kill = [s for s in report['signals'] if s['signal'] == 'SIGKILL'][0]
            late.append(kill['elapsed'] - opts.timeout)
            proc.wait()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = dict((k, summary(v)) for k, v in times.items())
    base = result['baseline']['median_ms']
    result['overhead_in_process_median_ms'] = round(result['in_process']['median_ms'] - base, 2)
    result['overhead_module_process_median_ms'] = round(result['module_process']['median_ms'] - base, 2)
    result['overhead_module_minus_startup_median_ms'] = round(result['module_process']['median_ms'] - base
                                                              - result['python_startup']['median_ms'], 2)
    result['escalation'] = {'timeout_s': opts.timeout, 'rounds': len(late),
                            'kill_after_timeout_ms_max': round(max(late) * 1000, 2),
                            'kill_after_timeout_ms_median': round(statistics.median(late) * 1000, 2)}
    result['processes_on_host'] = len(procfs.scan_processes())
    result['python'] = sys.version.split()[0]
    result['kernel'] = os.uname()[2]
    text = json.dumps(result, indent=1, sort_keys=True)
    if opts.json:
        with open(opts.json, 'w') as f:
            f.write(text + '\n')
    sys.stdout.write(text + '\n')


if __name__ == '__main__':
    main()
