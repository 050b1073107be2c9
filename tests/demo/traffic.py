# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Steady HTTP traffic through nginx: reads and writes, every failure and every acknowledged write recorded.

Reads: ``GET /`` and ``GET /archive/<id>`` of an acknowledged write; optionally (``slow_ratio``, needs the stand-in's
test hooks) slow posts ``POST /__test/sleep?seconds=1`` that are in flight when a backend goes away. Writes: ``POST /api/archive``; a write is
*acknowledged* when the answer is ``{"code": 0, "data": {"id": N}}`` (the stand-in answers only after the commit).
At the end the acknowledged ids are looked up in the database: an acknowledged id that is missing is a lost write.

Only loopback or test-fleet addresses (private ranges) are accepted; every loop is bounded in count and time.

CLI:
  python3 tests/demo/traffic.py --url http://10.x.y.11 --host-header www.demo.test --duration 120 \\
      [--threads 4] [--interval 0.05] [--max-requests 100000] [--stop-file PATH] [--lab NAME --db-host node1] \\
      [--out result.json]
Stops at --duration, --max-requests, SIGTERM/SIGINT or when --stop-file appears; prints a JSON summary.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

DATABASE = 'anqicms_www'


def _check_target(url: str) -> None:
    host = urllib.parse.urlsplit(url).hostname or ''
    try:
        address = ipaddress.ip_address(host)
    except ValueError as exc:
        raise ValueError(f'traffic target {url!r}: expected an IP address on loopback or the test fleet, got {host!r}') from exc
    if not (address.is_loopback or address.is_private):
        raise ValueError(f'traffic target {url!r}: {address} is neither loopback nor a private test-fleet address; refusing to send traffic there')


class Traffic:
    """Worker threads sending reads and writes until stopped or a bound is reached."""

    def __init__(self, url: str, host_header: str, threads: int = 4, interval: float = 0.05, duration: float = 300,
                 max_requests: int = 200000, write_ratio: float = 0.3, slow_ratio: float = 0.0, timeout: float = 10,
                 title: str = 'traffic') -> None:
        """``title``: the written archives are titled ``<title> <worker>-<number>``; a run that counts its own writes
        in a database other runs wrote to gives a title of its own."""
        _check_target(url)
        self.url = url.rstrip('/')
        self.host_header = host_header
        self.threads = max(1, threads)
        self.interval = interval
        self.duration = duration
        self.max_requests = max_requests
        self.write_ratio = write_ratio
        self.slow_ratio = slow_ratio
        self.timeout = timeout
        self.title = title
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.requests = 0
        self.reads = 0
        self.writes = 0
        self.failures: list[dict[str, Any]] = []
        self.acknowledged: list[int] = []
        self.started = 0.0
        self.finished = 0.0
        self._workers: list[threading.Thread] = []
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _request(self, method: str, path: str, data: bytes | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={'Host': self.host_header})
        if data is not None:
            request.add_header('Content-Type', 'application/x-www-form-urlencoded')
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def _one(self, worker: int, number: int) -> None:
        bucket = (number * self.threads + worker) % 10
        write = bucket < int(self.write_ratio * 10)
        slow = not write and bucket < int(self.write_ratio * 10) + int(self.slow_ratio * 10)
        kind, path = 'write', '/api/archive'
        try:
            if slow:
                # A slow non-idempotent request (a form post that takes a second): nginx cannot retry it elsewhere.
                kind, path = 'slow', '/__test/sleep?seconds=1'
                status, payload = self._request('POST', path, b'')
                ok = status == 200
                with self.lock:
                    self.reads += 1
            elif write:
                body = urllib.parse.urlencode({'title': f'{self.title} {worker}-{number}', 'content': 'steady load'}).encode()
                status, payload = self._request('POST', path, body)
                answer = json.loads(payload) if status == 200 else {}
                ident = (answer.get('data') or {}).get('id') if answer.get('code') == 0 else None
                ok = status == 200 and isinstance(ident, int)
                with self.lock:
                    self.writes += 1
                    if ok:
                        self.acknowledged.append(ident)
            else:
                kind = 'read'
                with self.lock:
                    last = self.acknowledged[-1] if self.acknowledged and number % 2 else None
                path = f'/archive/{last}' if last else '/'
                status, payload = self._request('GET', path)
                ok = status == 200
                with self.lock:
                    self.reads += 1
            detail = '' if ok else f'HTTP {status}: {payload[:120]!r}'
        except (OSError, ValueError) as exc:
            ok, detail = False, f'{type(exc).__name__}: {exc}'
        if not ok:
            with self.lock:
                self.failures.append({'at': round(time.monotonic() - self.started, 3), 'kind': kind, 'path': path, 'error': detail})

    def _worker(self, worker: int) -> None:
        number = 0
        deadline = self.started + self.duration
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            with self.lock:
                if self.requests >= self.max_requests:
                    return
                self.requests += 1
            self._one(worker, number)
            number += 1
            self.stop_event.wait(self.interval)

    def start(self) -> 'Traffic':
        self.started = time.monotonic()
        self._workers = [threading.Thread(target=self._worker, args=(i,), daemon=True) for i in range(self.threads)]
        for thread in self._workers:
            thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self.stop_event.set()
        for thread in self._workers:
            thread.join(self.timeout + 5)
        self.finished = time.monotonic()
        return self.summary()

    def wait(self, stop_file: str | None = None) -> dict[str, Any]:
        """Block until the duration or count bound is reached, or `stop_file` exists."""
        deadline = self.started + self.duration + 1
        while time.monotonic() < deadline and any(t.is_alive() for t in self._workers):
            if stop_file and os.path.exists(stop_file):
                break
            if self.stop_event.wait(0.2):
                break
        return self.stop()

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {'seconds': round((self.finished or time.monotonic()) - self.started, 1), 'requests': self.requests,
                    'reads': self.reads, 'writes': self.writes, 'failed': len(self.failures),
                    'failures': self.failures[:50], 'acknowledged_writes': len(self.acknowledged),
                    'acknowledged_ids': list(self.acknowledged)}


def missing_ids(ids: list[int], run_sql: Callable[[str], str]) -> list[int]:
    """Acknowledged ids absent from the archives table; run_sql(query) returns mysql -N output."""
    missing: list[int] = []
    for start in range(0, len(ids), 500):
        chunk = sorted(set(ids[start:start + 500]))
        if not chunk:
            continue
        found = run_sql(f"SELECT id FROM `{DATABASE}`.`archives` WHERE id IN ({','.join(str(int(i)) for i in chunk)})")
        present = {int(x) for x in found.split()}
        missing += [i for i in chunk if i not in present]
    return missing


def lab_sql(lab_name: str, host: str) -> Callable[[str], str]:
    """A run_sql for MariaDB on a test-fleet host (root over the unix socket, inside the host)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'lab'))
    import fleet  # pylint: disable=import-outside-toplevel

    lab = fleet.current(lab_name)
    if lab is None:
        raise RuntimeError(f'lab {lab_name!r} is not up: cannot look the acknowledged writes up in its database')

    def run(query: str) -> str:
        return lab.exec(host, ['mysql', '-N', '-B', '-e', query], timeout=60).stdout
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--url', required=True)
    parser.add_argument('--host-header', required=True)
    parser.add_argument('--threads', type=int, default=4)
    parser.add_argument('--interval', type=float, default=0.05)
    parser.add_argument('--duration', type=float, default=300)
    parser.add_argument('--max-requests', type=int, default=200000)
    parser.add_argument('--slow-ratio', type=float, default=0.0)
    parser.add_argument('--stop-file')
    parser.add_argument('--lab')
    parser.add_argument('--db-host')
    parser.add_argument('--out')
    args = parser.parse_args(argv)
    traffic = Traffic(args.url, args.host_header, threads=args.threads, interval=args.interval, duration=min(args.duration, 3600),
                      max_requests=args.max_requests, slow_ratio=args.slow_ratio)
    signal.signal(signal.SIGTERM, lambda *_: traffic.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: traffic.stop_event.set())
    result = traffic.start().wait(args.stop_file)
    if args.lab and args.db_host:
        result['missing_writes'] = missing_ids(result['acknowledged_ids'], lab_sql(args.lab, args.db_host))
    result.pop('acknowledged_ids')
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + '\n', encoding='utf-8')
    sys.stdout.write(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
