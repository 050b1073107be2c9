"""Fixtures for the stand-in contract tests: a private MariaDB and stand-in instances as real processes."""

from __future__ import annotations

import os
import pathlib
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import standin  # noqa: E402  pylint: disable=wrong-import-position
from harness import Instance, MariaDB, free_port  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope="session", name="release")
def release_fixture() -> pathlib.Path:
    """The stand-in release zip (built if the sources changed)."""
    return standin.build()


@pytest.fixture(scope="session", name="mariadb")
def mariadb_fixture() -> Iterator[MariaDB]:
    """Start a private MariaDB in a temp datadir; torn down at the end of the session."""
    for tool in ("mariadb-install-db", "mariadbd", "mariadb", "mariadb-admin"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            pytest.fail(f"{tool} not found: install the Debian package mariadb-server")
    base = tempfile.mkdtemp(prefix="standin-mariadb-")
    datadir, sock, log = f"{base}/data", f"{base}/mysqld.sock", f"{base}/error.log"
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
                    "--auth-root-authentication-method=socket", "--skip-test-db"],
                   capture_output=True, check=True, timeout=120)
    port = free_port()
    mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    proc = subprocess.Popen([mariadbd, "--no-defaults",  # pylint: disable=consider-using-with  # stopped in finally
                             f"--datadir={datadir}", f"--socket={sock}", f"--port={port}",
                             "--bind-address=127.0.0.1", "--user=root", f"--pid-file={base}/mysqld.pid",
                             f"--log-error={log}", "--skip-name-resolve", "--innodb-buffer-pool-size=64M",
                             "--innodb-flush-log-at-trx-commit=2", "--max-connections=600"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _attempt in range(150):
            if proc.poll() is not None:
                tail = pathlib.Path(log).read_text(encoding="utf-8", errors="replace")[-2000:]
                pytest.fail(f"private mariadbd exited with {proc.returncode}: {tail}")
            if subprocess.run(["mariadb-admin", "--no-defaults", "-S", sock, "-u", "root", "ping"],
                              capture_output=True, check=False, timeout=10).returncode == 0:
                break
            time.sleep(0.2)
        else:
            pytest.fail("private mariadbd did not answer within 30 s")
        db = MariaDB(host="127.0.0.1", port=port, socket_path=sock, user="anqi", password=secrets.token_hex(12))
        db.sql(f"CREATE USER 'anqi'@'127.0.0.1' IDENTIFIED BY '{db.password}';\n"
               "GRANT ALL PRIVILEGES ON *.* TO 'anqi'@'127.0.0.1';\n")
        yield db
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def make_instance(release: pathlib.Path, tmp_path: pathlib.Path) -> Iterator:
    """Factory: unpack the release into a fresh directory with standin.deploy; processes killed at teardown."""
    made: list[Instance] = []

    def factory(name: str = "anqicms") -> Instance:
        directory = tmp_path / name
        standin.deploy(standin.local_run, standin.local_put, str(directory), release)
        inst = Instance(directory)
        made.append(inst)
        return inst

    yield factory
    for inst in made:
        inst.cleanup()
