"""Test harness for the stand-in contract tests: a private MariaDB and stand-in instances as real processes."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import standin

_COLLECTIONS = str(pathlib.Path(__file__).resolve().parents[2] / '.collections')
if _COLLECTIONS not in sys.path:
    sys.path.insert(0, _COLLECTIONS)

from ansible_collections.opsguard.anqicms.tests.utils.ports import free_port, port_answers  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

http = standin.http


@dataclass
class MariaDB:
    """A private mariadbd on 127.0.0.1."""

    host: str
    port: int
    socket_path: str
    user: str
    password: str = field(repr=False)

    def sql(self, query: str, timeout: float = 30) -> list[list[str]]:
        """Run SQL as root over the private socket; rows of tab-separated columns."""
        proc = subprocess.run(["mariadb", "--no-defaults", "-S", self.socket_path, "-u", "root", "-N", "-B"],
                              input=query, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise AssertionError(f"SQL failed on the test MariaDB: {proc.stderr.strip()}\n{query}")
        return [line.split("\t") for line in proc.stdout.splitlines()]

    def connections(self, database: str) -> int:
        """How many client connections use ``database`` now.

        SHOW PROCESSLIST, not information_schema.PROCESSLIST: the latter builds an on-disk temporary table for every
        query, and a test that polls it in a loop depends on the server's temporary directory for nothing.
        """
        return sum(1 for row in self.sql("SHOW PROCESSLIST") if len(row) > 3 and row[3] == database)

    def mysql_json(self, database: str, **extra: object) -> dict[str, object]:
        """A config.json "mysql" section for this server."""
        return {"database": database, "user": self.user, "password": self.password, "host": self.host,
                "port": self.port, "use_default": False, **extra}


class Instance:
    """One unpacked release directory and the stand-in processes started from it."""

    def __init__(self, directory: pathlib.Path):
        self.dir = directory
        self.exe = directory / "anqicms"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.port = 0

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port of the last start>."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        """running.log (stdout and stderr of every start)."""
        path = self.dir / "running.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    @property
    def error_log(self) -> str:
        """error.log next to the executable."""
        path = self.dir / "error.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def start(self, *args: str, port: int | None = None, env: dict[str, str] | None = None, hooks: bool = True,
              wait: bool = True, exe: str | os.PathLike[str] | None = None,
              cwd: os.PathLike[str] | None = None) -> subprocess.Popen[bytes]:
        """Start the stand-in (own session, output appended to running.log) and wait until it answers."""
        cmd = [str(exe or self.exe)]
        if port is not None:
            cmd += ["-port", str(port)]
            self.port = port
        cmd += list(args)
        full_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
        if hooks:
            full_env["ANQICMS_STANDIN_HOOKS"] = "1"
        full_env.update(env or {})
        with open(self.dir / "running.log", "ab") as out:
            proc = subprocess.Popen(  # pylint: disable=consider-using-with  # lives until cleanup()
                cmd, cwd=cwd or self.dir, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        if wait:
            self.wait_ready(proc)
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
        """Wait until the port answers; fail with the log if the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"stand-in exited with {proc.returncode} before answering on {self.port}:\n"
                                     f"{self.log[-3000:]}\n{self.error_log[-2000:]}")
            if port_answers(self.port):
                return
            time.sleep(0.05)
        raise AssertionError(f"stand-in did not answer on port {self.port} within {timeout} s:\n{self.log[-3000:]}")

    def get(self, path: str, headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        """GET without following redirects."""
        return http(self.base_url + path, headers=headers, timeout=timeout)

    def post(self, path: str, data: bytes, content_type: str = "application/x-www-form-urlencoded",
             headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        """POST without following redirects."""
        return http(self.base_url + path, data=data, headers={"Content-Type": content_type, **(headers or {})},
                    timeout=timeout)

    def cleanup(self) -> None:
        """SIGKILL the process group of every process this instance started."""
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
