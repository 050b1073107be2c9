# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A private, throw-away MariaDB server for tests: own datadir, socket and loopback port.

It never touches the machine's own MariaDB service. ``PrivateMariaDB(base).start()`` initialises
a datadir under ``base``, starts ``mariadbd`` on 127.0.0.1 with a free port, and ``stop()`` shuts it
down (SIGTERM to the PID it started, SIGKILL after a bounded wait).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class PrivateMariaDB(object):
    def __init__(self, base: str, port: int | None = None) -> None:
        self.base = base
        self.datadir = os.path.join(base, 'data')
        self.socket = os.path.join(base, 'mysqld.sock')
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log = os.path.join(base, 'mariadbd.log')

    def start(self, timeout: float = 60.0) -> PrivateMariaDB:
        os.makedirs(self.base, exist_ok=True)
        if not os.path.isdir(os.path.join(self.datadir, 'mysql')):
            subprocess.run(['mariadb-install-db', '--no-defaults', '--datadir=' + self.datadir, '--user=root',
                            '--auth-root-authentication-method=socket', '--skip-test-db'],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        self.proc = subprocess.Popen(
            ['mariadbd', '--no-defaults', '--datadir=' + self.datadir, '--socket=' + self.socket, '--port=%d' % self.port,
             '--bind-address=127.0.0.1', '--user=root', '--skip-log-bin', '--innodb-buffer-pool-size=64M',
             '--innodb-log-file-size=48M', '--pid-file=' + os.path.join(self.base, 'mariadbd.pid'), '--log-error=' + self.log],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('mariadbd exited with %s; see %s' % (self.proc.returncode, self.log))
            if self.sql('SELECT 1;', check=False).returncode == 0:
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError('mariadbd did not answer within %ss; see %s' % (timeout, self.log))

    def sql(self, statements: str, database: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run SQL as root through the private socket."""
        cmd = ['mariadb', '--no-defaults', '--socket=' + self.socket, '-uroot', '--batch', '--skip-column-names']
        if database:
            cmd.append('--database=' + database)
        return subprocess.run(cmd, input=statements, text=True, capture_output=True, check=check, timeout=300)

    def rows(self, statements: str, database: str | None = None) -> list:
        out = self.sql(statements, database).stdout
        return [line.split('\t') for line in out.splitlines() if line]

    def pause(self) -> None:
        """Stop the server (the data stays), like a database that went down."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self, remove: bool = False) -> None:
        self.pause()
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)


def _cli() -> None:
    """``private_mariadb.py start BASE`` prints {"port", "socket", "pid"} as JSON and leaves the server running;
    ``private_mariadb.py stop BASE`` stops the server started in BASE and removes BASE."""
    import json  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel

    if len(sys.argv) != 3 or sys.argv[1] not in ('start', 'stop'):
        sys.stderr.write('usage: private_mariadb.py start|stop BASE\n')
        sys.exit(2)
    base = os.path.abspath(sys.argv[2])
    pidfile = os.path.join(base, 'mariadbd.pid')
    if sys.argv[1] == 'start':
        db = PrivateMariaDB(base).start()
        sys.stdout.write(json.dumps({'port': db.port, 'socket': db.socket, 'pid': db.proc.pid}) + '\n')
        return
    try:
        with open(pidfile) as handle:
            pid = int(handle.read().strip())
        exe = os.path.realpath('/proc/%d/exe' % pid)
        if os.path.basename(exe) in ('mariadbd', 'mysqld'):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while os.path.exists('/proc/%d' % pid) and time.monotonic() < deadline:
                time.sleep(0.1)
    except (OSError, ValueError):
        pass
    shutil.rmtree(base, ignore_errors=True)


if __name__ == '__main__':
    _cli()
