# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A private, throw-away MariaDB server for tests: own datadir, socket and loopback port.

It never touches the machine's own MariaDB service. ``PrivateMariaDB(base).start()`` initialises a datadir under
``base``, starts ``mariadbd`` on 127.0.0.1 with a free port, and ``stop()`` shuts it down (SIGTERM to the PID it
started, SIGKILL after a bounded wait).

As a script (what the integration targets run, through
``tests/integration/targets/setup_private_mariadb/files/private_mariadb.py``):
``mariadb.py start BASE`` prints {"port", "socket", "pid"} as JSON and leaves the server running;
``mariadb.py stop BASE`` stops the server started in BASE and removes BASE.

Only the standard library and ``ports.py`` beside this file are used: ansible-test copies both for the integration
targets (``needs/file`` aliases of setup_private_mariadb).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

try:
    from .ports import free_port
except ImportError:  # loaded as a top-level module, with this directory on sys.path (private_mariadb.py)
    from ports import free_port  # type: ignore[no-redef]  # pylint: disable=import-error


def tool(name: str) -> str:
    """Path of a MariaDB program: on PATH or in /usr/sbin, /usr/bin."""
    for candidate in (shutil.which(name), '/usr/sbin/' + name, '/usr/bin/' + name):
        if candidate and os.path.exists(candidate):
            return candidate
    raise RuntimeError('%s not found: install the Debian package mariadb-server' % name)


class PrivateMariaDB(object):
    """One mariadbd with its own datadir under ``base``, listening on 127.0.0.1:``port`` and a socket in ``base``."""

    def __init__(self, base: str, port: int | None = None, extra_args: tuple | list = ()) -> None:
        self.base = str(base)
        self.datadir = os.path.join(self.base, 'data')
        self.socket = os.path.join(self.base, 'mysqld.sock')
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.log = os.path.join(self.base, 'mariadbd.log')
        # Its own directory for temporary tables and files, not the machine's /tmp shared with every other test.
        self.tmpdir = os.path.join(self.base, 'tmp')

    def start(self, timeout: float = 60.0) -> PrivateMariaDB:
        """Initialise the datadir (once) and start the server; return once it answers ``SELECT 1``."""
        os.makedirs(self.base, exist_ok=True)
        os.makedirs(self.tmpdir, mode=0o700, exist_ok=True)
        if not os.path.isdir(os.path.join(self.datadir, 'mysql')):
            subprocess.run([tool('mariadb-install-db'), '--no-defaults', '--datadir=' + self.datadir, '--user=root',
                            '--auth-root-authentication-method=socket', '--skip-test-db'],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with  # lives until stop()
            [tool('mariadbd'), '--no-defaults', '--datadir=' + self.datadir, '--socket=' + self.socket, '--port=%d' % self.port,
             '--bind-address=127.0.0.1', '--user=root', '--skip-log-bin', '--tmpdir=' + self.tmpdir, '--innodb-buffer-pool-size=64M',
             '--innodb-log-file-size=48M', '--pid-file=' + os.path.join(self.base, 'mariadbd.pid'), '--log-error=' + self.log]
            + self.extra_args,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('mariadbd exited with %s; see %s:\n%s' % (self.proc.returncode, self.log, self.log_tail()))
            if self.sql('SELECT 1;', check=False).returncode == 0:
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError('mariadbd did not answer within %ss; see %s:\n%s' % (timeout, self.log, self.log_tail()))

    def log_tail(self, size: int = 2000) -> str:
        """The end of the server's error log."""
        try:
            with open(self.log, encoding='utf-8', errors='replace') as handle:
                return handle.read()[-size:]
        except OSError:
            return ''

    def sql(self, statements: str, database: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run SQL as root through the private socket."""
        cmd = [tool('mariadb'), '--no-defaults', '--socket=' + self.socket, '-uroot', '--batch', '--skip-column-names']
        if database:
            cmd.append('--database=' + database)
        return subprocess.run(cmd, input=statements, text=True, capture_output=True, check=check, timeout=300)

    def rows(self, statements: str, database: str | None = None) -> list:
        """The result rows of ``statements``, each a list of tab-separated columns."""
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
        """Stop the server; ``remove=True`` also deletes ``base``."""
        self.pause()
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)


def stop_started(base: str) -> None:
    """Stop the server a ``start`` command left running in ``base`` (only if its PID is still a mariadbd) and remove base."""
    try:
        with open(os.path.join(base, 'mariadbd.pid'), encoding='ascii') as handle:
            pid = int(handle.read().strip())
        if os.path.basename(os.path.realpath('/proc/%d/exe' % pid)) in ('mariadbd', 'mysqld'):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while os.path.exists('/proc/%d' % pid) and time.monotonic() < deadline:
                time.sleep(0.1)
    except (OSError, ValueError):
        pass
    shutil.rmtree(base, ignore_errors=True)


def main(argv: list) -> int:
    """``start BASE`` / ``stop BASE``; see the module docstring."""
    if len(argv) != 2 or argv[0] not in ('start', 'stop'):
        sys.stderr.write('usage: private_mariadb.py start|stop BASE\n')
        return 2
    base = os.path.abspath(argv[1])
    if argv[0] == 'start':
        db = PrivateMariaDB(base).start()
        sys.stdout.write(json.dumps({'port': db.port, 'socket': db.socket, 'pid': db.proc.pid}) + '\n')
        return 0
    stop_started(base)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
