"""Benchmark of the test fleet (not a test): time until N hosts answer `ansible -m ping`, memory per idle host.

Run as root: python3 tests/lab/bench.py [--sizes 3 10] [--idle 30] [--name ogbench]
Prints one JSON object per fleet size; docs/testing.md records the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fleet  # noqa: E402  pylint: disable=wrong-import-position


def _meminfo(key: str) -> int:
    for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _stat(cgroup: Path) -> dict[str, int]:
    lines = (cgroup / "memory.stat").read_text(encoding="ascii").splitlines()
    return {k: int(v) for k, v in (line.split() for line in lines)}


def measure(size: int, idle: float, name: str) -> dict[str, object]:
    available_before = _meminfo("MemAvailable")
    start = time.monotonic()
    lab = fleet.up(size, name=name)
    up_seconds = time.monotonic() - start
    try:
        attempts = 0
        while True:
            attempts += 1
            result = lab.ansible("fleet", "ansible.builtin.ping", timeout=300)
            if result.returncode == 0 and result.stdout.count("| SUCCESS") == size:
                break
            if attempts >= 5:
                raise fleet.LabError(f"ansible ping failed 5 times:\n{result.stdout}\n{result.stderr}")
        ping_ready = time.monotonic() - start
        ping_start = time.monotonic()
        lab.ansible("fleet", "ansible.builtin.ping", timeout=300)
        ping_only = time.monotonic() - ping_start
        time.sleep(idle)
        stats = [_stat(h.cgroup("memory")) for h in lab.hosts]
        usage = [lab.memory_usage(h) for h in lab.hosts]
        available_after = _meminfo("MemAvailable")
    finally:
        down_start = time.monotonic()
        fleet.down(name)
        down_seconds = time.monotonic() - down_start
    mib = 1024 * 1024
    return {
        "hosts": size,
        "seconds_up": round(up_seconds, 2),
        "seconds_until_all_ping": round(ping_ready, 2),
        "ping_attempts": attempts,
        "seconds_ansible_ping_warm": round(ping_only, 2),
        "seconds_down": round(down_seconds, 2),
        "idle_seconds": idle,
        "mib_per_host_cgroup_usage": round(sum(usage) / size / mib, 1),
        "mib_per_host_rss": round(sum(s["total_rss"] for s in stats) / size / mib, 1),
        "mib_per_host_cache": round(sum(s["total_cache"] for s in stats) / size / mib, 1),
        "mib_per_host_memavailable_drop": round((available_before - available_after) / size / mib, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idling before memory is read")
    parser.add_argument("--name", default="ogbench")
    args = parser.parse_args()
    print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "kernel": platform.release(),
                      "cpus": os.cpu_count(), "mem_total_gib": round(_meminfo("MemTotal") / 2 ** 30, 1)}))
    for size in args.sizes:
        print(json.dumps(measure(size, args.idle, args.name)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
