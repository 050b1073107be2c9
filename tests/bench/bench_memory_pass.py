# -*- coding: utf-8 -*-
# Copyright: contributors to opsguard.anqicms
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cost of one memory collection pass, as a watcher pays it every few seconds.

1. In-process: CPU time (time.process_time: user + system) of one pass, median and p90 of --passes passes, on this
   host with at least --processes processes (idle `sleep` children are started to reach that number):
   a) the watcher's pass: metrics.collect (memory.gather with detailed=false, kernel_messages=false, the trend state,
      the exposition text, both files written atomically),
   b) memory.gather with the module's defaults (USS/PSS of named services and the top 10, kernel log).
2. Whole cost: a fresh interpreter (`python3 [-S] -c ...`, -S: without site-packages) importing the module_utils and
   doing pass a) once, --runs times; CPU of the child (user + system, from wait4) as a share of one core at a
   --interval second period. The module_utils are copied into a private tree and byte-compiled first, as a watcher
   installed on a host has them (a source-only import would compile them on every run).
3. With --compare DIR (a collections tree of another revision, e.g. `git archive REV plugins` unpacked into
   DIR/ansible_collections/opsguard/anqicms): memory.gather of both trees, watcher options and defaults, measured
   in-process in alternating child processes (--rounds rounds of 10 passes each), so both see the same load.

Usage: PYTHONPATH=.collections .venv/bin/python tests/bench/bench_memory_pass.py [--passes 30] [--runs 20] [--compare DIR] [--json PATH]
Goals (issue: continuous watch): a) <= 20 ms CPU per pass with >= 500 processes; 2. <= 0.5 % of one core at 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from ansible_collections.opsguard.anqicms.plugins.module_utils import memory, metrics

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE_UTILS = os.path.join(HERE, '..', '..', 'plugins', 'module_utils')
PASS_MODULES = ('cgroups', 'memory', 'metrics', 'paths', 'procfs', 'services')
SCRIPT = '''
import time
from ansible_collections.opsguard.anqicms.plugins.module_utils import memory, metrics
th = dict(memory.DEFAULT_THRESHOLDS)
metrics.collect(lambda: memory.gather(th, detailed=False, kernel_messages=False), {textfile!r})
'''


GATHER_ONLY = '''
import json, time
from ansible_collections.opsguard.anqicms.plugins.module_utils import memory
th = dict(memory.DEFAULT_THRESHOLDS)
out = {}
for label, options in (('watcher options', dict(detailed=False, kernel_messages=False)), ('defaults', {})):
    memory.gather(th, **options)
    times = []
    for _i in range(10):
        start = time.process_time()
        memory.gather(th, **options)
        times.append(time.process_time() - start)
    out[label] = times
print(json.dumps(out))
'''


def compare(trees: dict[str, str], rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    """memory.gather CPU per pass of each collections tree, alternating child processes round by round."""
    times: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    for _round in range(rounds):
        for name, path in trees.items():
            env = dict(os.environ, PYTHONPATH=path)
            done = subprocess.run([sys.executable, '-c', GATHER_ONLY], env=env, capture_output=True, text=True, check=True)
            for label, values in json.loads(done.stdout).items():
                times[name].setdefault(label, []).extend(values)
    return {name: {label: summary(values) for label, values in by_label.items()} for name, by_label in times.items()}


def count_processes() -> int:
    return sum(1 for entry in os.listdir('/proc') if entry.isdigit())


def cpu_of(call, passes: int) -> list[float]:
    call()  # warm-up: imports, compiled patterns, page cache
    times = []
    for _index in range(passes):
        start = time.process_time()
        call()
        times.append(time.process_time() - start)
    return times


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {'median_ms': round(statistics.median(ordered) * 1000, 2),
            'p90_ms': round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 2),
            'min_ms': round(ordered[0] * 1000, 2)}


def private_tree(scratch: str, python: str) -> str:
    """The pass's module_utils in ``scratch``/lib/ansible_collections/..., byte-compiled by ``python``."""
    lib = os.path.join(scratch, 'lib')
    package = os.path.join(lib, 'ansible_collections', 'opsguard', 'anqicms', 'plugins', 'module_utils')
    os.makedirs(package)
    for name in PASS_MODULES:
        shutil.copy(os.path.join(MODULE_UTILS, name + '.py'), package)
    subprocess.run([python, '-m', 'compileall', '-q', lib], check=True, env=dict(os.environ, PYTHONDONTWRITEBYTECODE=''))
    return lib


def fresh_interpreter(python: str, flags: list[str], textfile: str, runs: int, pythonpath: str, code: str | None = None) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONDONTWRITEBYTECODE', 'PYTHONPATH')}
    env['PYTHONPATH'] = pythonpath
    code = SCRIPT.format(textfile=textfile) if code is None else code
    cpu = []
    for _index in range(runs + 1):
        child = subprocess.Popen([python] + flags + ['-c', code], env=env)
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise RuntimeError('the pass script failed with exit status %d' % child.returncode)
        cpu.append(usage.ru_utime + usage.ru_stime)
    return cpu[1:]  # the first run warms the page cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--processes', type=int, default=500)
    parser.add_argument('--passes', type=int, default=30)
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--interval', type=float, default=10.0)
    parser.add_argument('--python', default='/usr/bin/python3' if os.path.exists('/usr/bin/python3') else sys.executable)
    parser.add_argument('--compare', help='collections tree of another revision to compare memory.gather with')
    parser.add_argument('--rounds', type=int, default=4)
    parser.add_argument('--json')
    args = parser.parse_args()
    sleepers = []
    try:
        processes = count_processes()
        while processes < args.processes:  # other processes come and go: top up until the count holds
            while count_processes() < args.processes + 10:
                sleepers.append(subprocess.Popen(['sleep', '3600'], stdin=subprocess.DEVNULL))
            time.sleep(0.5)
            processes = count_processes()
        th = dict(memory.DEFAULT_THRESHOLDS)
        with tempfile.TemporaryDirectory() as scratch:
            textfile = os.path.join(scratch, 'opsguard.prom')
            facts = memory.gather(th, detailed=False, kernel_messages=False)
            watcher = cpu_of(lambda: metrics.collect(lambda: memory.gather(th, detailed=False, kernel_messages=False), textfile),
                             args.passes)
            defaults = cpu_of(lambda: memory.gather(th), args.passes)
            pythonpath = private_tree(scratch, args.python)
            whole = {}
            floor = fresh_interpreter(args.python, ['-S'], textfile, args.runs, pythonpath, code='pass')
            whole['python3 -S -c pass (interpreter alone)'] = summary(floor)
            for label, flags in (('python3', []), ('python3 -S', ['-S'])):
                cpu = fresh_interpreter(args.python, flags, textfile, args.runs, pythonpath)
                whole[label] = dict(summary(cpu), percent_of_one_core=round(statistics.median(cpu) / args.interval * 100, 3))
        result = {
            'processes': processes, 'processes_seen_by_gather': facts['process_count'],
            'load_average': os.getloadavg(), 'python': args.python, 'interval_seconds': args.interval,
            'watcher_pass_in_process': summary(watcher), 'gather_defaults_in_process': summary(defaults),
            'fresh_interpreter': whole, 'goal_pass_ms': 20, 'goal_percent_of_one_core': 0.5,
        }
        if args.compare:
            here = memory.__file__
            for _level in range(6):  # .../ansible_collections/opsguard/anqicms/plugins/module_utils/memory.py
                here = os.path.dirname(here)
            result['gather_compared'] = compare({'this tree': here, args.compare: args.compare}, args.rounds)
        result['load_average_after'] = os.getloadavg()
    finally:
        for child in sleepers:
            child.kill()
            child.wait()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as handle:
            handle.write(text + '\n')


if __name__ == '__main__':
    main()
