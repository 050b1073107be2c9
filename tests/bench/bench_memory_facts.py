"""Benchmark: opsguard.anqicms.memory_facts against ansible.builtin.setup (gather_subset: hardware) and ping.

On one fleet host with at least 500 processes (500 idle `sleep` processes are added), in the same playbook run:
- wall time of the module process on the host (the interpreter Ansible starts, measured by a wrapper set as
  ansible_python_interpreter) over ROUNDS interleaved rounds, memory_facts / setup as ratios of medians and of
  minima, and the ratio of the work beyond ping's (interpreter start, AnsiballZ, module_utils.basic: the part
  every module pays) -- goal <= 0.3; the task wall time Ansible records (SSH and transfer included) too;
- peak RSS of the module process (ru_maxrss of that interpreter), memory_facts / ping (goal <= 1.2).

Usage (root): python3 tests/bench/bench_memory_facts.py [--rounds N] [--processes N] [--keep]
Lab name: OPSGUARD_LAB_NAME (default mf-bench). Prints one JSON document with every number.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'lab'))

import fleet  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.opsguard.anqicms.tests.utils import ansible_runner  # noqa: E402  pylint: disable=wrong-import-position

WRAPPER = '''#!/usr/bin/python3 -S
"""Run /usr/bin/python3 with the same arguments and stdin; append its peak RSS (KiB) and wall time to a log."""
import os
import resource
import sys
import time

start = time.monotonic()
pid = os.fork()
if pid == 0:
    os.execv('/usr/bin/python3', ['/usr/bin/python3'] + sys.argv[1:])
_, status = os.waitpid(pid, 0)
with open(os.environ.get('RSS_LOG', '/root/rss.log'), 'a', encoding='ascii') as log:
    log.write('%d %.4f %s\\n' % (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.monotonic() - start, sys.argv[-1]))
sys.exit(os.waitstatus_to_exitcode(status))
'''


def _duration(task_result: dict[str, Any]) -> float:
    start = datetime.datetime.fromisoformat(task_result['duration']['start'].replace('Z', '+00:00'))
    end = datetime.datetime.fromisoformat(task_result['duration']['end'].replace('Z', '+00:00'))
    return (end - start).total_seconds()


def _run_play(lab: Any, play: list[dict[str, Any]], timeout: float = 900) -> dict[str, Any]:
    proc, report = ansible_runner.run_play(play, lab.inventory_path, lab.ansible_env(), lab.state_dir, timeout=timeout)
    if proc.returncode != 0 or report is None:
        raise RuntimeError('benchmark play failed (exit %d): %s %s' % (proc.returncode, proc.stdout[-3000:], proc.stderr[-2000:]))
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=10)
    parser.add_argument('--processes', type=int, default=500)
    parser.add_argument('--keep', action='store_true', help='leave the fleet running')
    args = parser.parse_args()
    name = os.environ.get('OPSGUARD_LAB_NAME', 'mf-bench')
    lab = fleet.up(1, '2G', name=name)
    try:
        host = lab.hosts[0]
        lab.exec(host, 'for i in $(seq 1 %d); do setsid sleep 900 </dev/null >/dev/null 2>&1 & done; true' % args.processes)
        count = int(lab.exec(host, 'ls -d /proc/[0-9]* | wc -l').stdout.strip())
        tasks = []
        for _round in range(args.rounds):
            tasks.append({'name': 'memory_facts', 'opsguard.anqicms.memory_facts': {}})
            tasks.append({'name': 'setup hardware', 'ansible.builtin.setup': {'gather_subset': ['hardware']}})
        timing = _run_play(lab, [{'hosts': host.name, 'gather_facts': False, 'tasks': tasks}])
        durations: dict[str, list[float]] = {'memory_facts': [], 'setup hardware': []}
        for task in timing['plays'][0]['tasks']:
            durations[task['task']['name']].append(_duration(task['task']))

        wrapper = os.path.join(str(lab.state_dir), 'rsspy')
        with open(wrapper, 'w', encoding='ascii') as handle:
            handle.write(WRAPPER)
        lab.put(host, wrapper, '/root/rsspy', mode=0o755)
        lab.exec(host, 'rm -f /root/rss.log')
        rss_tasks = []
        for _round in range(args.rounds):
            rss_tasks.append({'name': 'ping', 'ansible.builtin.ping': {}})
            rss_tasks.append({'name': 'memory_facts', 'opsguard.anqicms.memory_facts': {}})
            rss_tasks.append({'name': 'setup hardware', 'ansible.builtin.setup': {'gather_subset': ['hardware']}})
        _run_play(lab, [{'hosts': host.name, 'gather_facts': False, 'vars': {'ansible_python_interpreter': '/root/rsspy'},
                         'tasks': rss_tasks}])
        lines = [line for line in lab.exec(host, 'cat /root/rss.log').stdout.split('\n') if line.strip()]
        order = ['ping', 'memory_facts', 'setup hardware'] * args.rounds
        if len(lines) != len(order):
            raise RuntimeError('expected %d wrapper records, got %d: %s' % (len(order), len(lines), lines))
        rss: dict[str, list[int]] = {label: [] for label in order}
        proc_time: dict[str, list[float]] = {label: [] for label in order}
        for label, line in zip(order, lines):
            fields = line.split()
            rss[label].append(int(fields[0]))
            proc_time[label].append(float(fields[1]))
        mf_time = statistics.median(durations['memory_facts'])
        setup_time = statistics.median(durations['setup hardware'])
        mf_proc = statistics.median(proc_time['memory_facts'])
        setup_proc = statistics.median(proc_time['setup hardware'])
        report = {
            'host_processes': count,
            'rounds': args.rounds,
            'task_seconds': {k: [round(v, 3) for v in vals] for k, vals in durations.items()},
            'task_median_seconds': {'memory_facts': round(mf_time, 3), 'setup_hardware': round(setup_time, 3)},
            'task_time_ratio': round(mf_time / setup_time, 3),
            'module_process_seconds': {k: [round(v, 3) for v in vals] for k, vals in proc_time.items()},
            'module_process_median_seconds': {k: round(statistics.median(v), 3) for k, v in proc_time.items()},
            'module_process_min_seconds': {k: round(min(v), 3) for k, v in proc_time.items()},
            'module_process_time_ratio': round(mf_proc / setup_proc, 3),
            'module_process_time_ratio_of_minima': round(min(proc_time['memory_facts']) / min(proc_time['setup hardware']), 3),
            # the work beyond what every module pays (interpreter start, AnsiballZ, module_utils.basic): minus ping
            'work_ratio_over_ping': round((min(proc_time['memory_facts']) - min(proc_time['ping']))
                                          / max(min(proc_time['setup hardware']) - min(proc_time['ping']), 1e-6), 3),
            'time_goal': 0.3,
            'peak_rss_kib': dict(rss),
            'peak_rss_ratio_memory_facts_to_ping': round(max(rss['memory_facts']) / max(rss['ping']), 3),
            'rss_goal': 1.2,
        }
        print(json.dumps(report, indent=2))
        ok = report['work_ratio_over_ping'] <= 0.3 and report['peak_rss_ratio_memory_facts_to_ping'] <= 1.2
        return 0 if ok else 1
    finally:
        if not args.keep:
            fleet.down(name)


if __name__ == '__main__':
    sys.exit(main())
