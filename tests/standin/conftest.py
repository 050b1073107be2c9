"""Fixtures for the stand-in contract tests: a private MariaDB and stand-in instances as real processes."""

from __future__ import annotations

import os
import pathlib
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import standin  # noqa: E402  pylint: disable=wrong-import-position
from harness import Instance, MariaDB  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.opsguard.anqicms.tests.utils.mariadb import PrivateMariaDB  # noqa: E402  pylint: disable=wrong-import-position


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
    server = PrivateMariaDB(tempfile.mkdtemp(prefix="standin-mariadb-"),
                            extra_args=["--skip-name-resolve", "--innodb-flush-log-at-trx-commit=2", "--max-connections=600"])
    try:
        try:
            server.start(timeout=30)
        except (RuntimeError, subprocess.SubprocessError) as exc:
            pytest.fail(f"private mariadbd did not start: {exc}")
        db = MariaDB(host="127.0.0.1", port=server.port, socket_path=server.socket, user="anqi", password=secrets.token_hex(12))
        assert db.sql("SELECT @@tmpdir") == [[server.tmpdir]], "the test MariaDB keeps its temporary files to itself"
        db.sql(f"CREATE USER 'anqi'@'127.0.0.1' IDENTIFIED BY '{db.password}';\n"
               "GRANT ALL PRIVILEGES ON *.* TO 'anqi'@'127.0.0.1';\n")
        yield db
    finally:
        server.stop(remove=True)


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
