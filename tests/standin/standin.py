"""Helpers around the AnQiCMS 3.5.8 stand-in: build the release zip, deploy it, install it over HTTP.

Import with ``tests/standin`` on ``sys.path``::

    import standin
    archive = standin.build()
    standin.deploy(run, put, "/opt/anqicms", archive)
    standin.web_install("http://10.0.0.2:8001", db_host="127.0.0.1", db_port=3306, database="anqicms",
                        user="anqicms", password=secret, admin_password="s3cret!")
    standin.version("http://10.0.0.2:8001")
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import shlex
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

HERE = pathlib.Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
BUILD_SCRIPT = HERE / "build.sh"
DEFAULT_OUTDIR = REPO_ROOT / ".build" / "standin"
ZIP_NAME = "anqicms-linux-amd64-v3.5.8.zip"
VERSION = "3.5.8"

RunFn = Callable[[str], "subprocess.CompletedProcess[str]"]
PutFn = Callable[[str, str], Any]


class StandinError(RuntimeError):
    """A stand-in operation failed; the message names the object, the expectation and a fix."""


def build(outdir: str | pathlib.Path | None = None, timeout: float = 600) -> pathlib.Path:
    """Build (if the sources changed) and return the path of the release zip."""
    target = pathlib.Path(outdir) if outdir else DEFAULT_OUTDIR
    proc = subprocess.run([str(BUILD_SCRIPT), str(target)], capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise StandinError(f"building the AnQiCMS stand-in into {target} failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-2000:]}; expected {BUILD_SCRIPT} to print the zip path. "
                           "Fix: install golang-go and golang-github-go-sql-driver-mysql-dev, then rerun.")
    path = pathlib.Path(proc.stdout.strip().splitlines()[-1])
    if not path.is_file():
        raise StandinError(f"{BUILD_SCRIPT} reported {path}, but that file does not exist")
    return path


def sha256_of(path: str | pathlib.Path) -> str:
    """Hex SHA-256 of a local file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_run(cmd: str) -> "subprocess.CompletedProcess[str]":
    """``run`` for :func:`deploy` on this machine."""
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=120, check=False)


def local_put(local: str, remote: str) -> None:
    """``put`` for :func:`deploy` on this machine."""
    shutil.copyfile(local, remote)


def _checked(run: RunFn, cmd: str, what: str, directory: str) -> str:
    proc = run(cmd)
    if proc.returncode != 0:
        raise StandinError(f"deploying the AnQiCMS stand-in to {directory}: {what} failed "
                           f"(exit {proc.returncode}): {(proc.stderr or proc.stdout or '').strip()[-1000:]}")
    return proc.stdout or ""


def deploy(run: RunFn, put: PutFn, directory: str, archive: str | pathlib.Path | None = None) -> None:
    """Unpack the release into ``directory`` on a host (created if needed; config.json is not in the zip).

    ``run(cmd)`` runs a shell command on the host and returns a CompletedProcess; ``put(local, remote)``
    copies a file there. Needs ``unzip`` and ``sha256sum`` on the host. Stop the instance first: a running
    binary cannot be overwritten.
    """
    archive_path = pathlib.Path(archive) if archive else build()
    expected = sha256_of(archive_path)
    remote_zip = _checked(run, "mktemp /tmp/anqicms-release.XXXXXX", "mktemp", directory).strip()
    if not remote_zip.startswith("/tmp/anqicms-release."):
        raise StandinError(f"deploying to {directory}: mktemp returned {remote_zip!r}, expected a /tmp path")
    try:
        put(str(archive_path), remote_zip)
        got = _checked(run, f"sha256sum {shlex.quote(remote_zip)}", "checksum of the uploaded zip", directory).split()
        if not got or got[0] != expected:
            raise StandinError(f"deploying to {directory}: uploaded zip has SHA-256 {got[0] if got else '?'}, "
                               f"expected {expected}; the copy was damaged, rerun the deploy")
        _checked(run, f"mkdir -p {shlex.quote(directory)} && unzip -o -q {shlex.quote(remote_zip)} -d {shlex.quote(directory)}",
                 "unzip", directory)
    finally:
        run(f"rm -f {shlex.quote(remote_zip)}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # pylint: disable=too-many-arguments,too-many-positional-arguments
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request without following redirects (POST when ``data`` is given): (status, headers, body)."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    if data is not None and not req.has_header("Content-type"):
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers or {}), exc.read() if exc.fp else b""


def web_install(base_url: str, *, db_host: str, db_port: int, database: str, user: str, password: str,
                admin_user: str = "admin", admin_password: str, site_url: str | None = None,
                timeout: float = 30) -> None:
    """Run the web install (``POST /install``); raises StandinError unless it answers code 0."""
    form = {
        "host": db_host, "port": str(db_port), "database": database, "user": user, "password": password,
        "admin_user": admin_user, "admin_password": admin_password, "base_url": site_url or base_url,
        "preview_data": "0",
    }
    url = base_url.rstrip("/") + "/install"
    status, headers, body = http(url, urllib.parse.urlencode(form).encode(), timeout=timeout)
    if status in (301, 302):
        raise StandinError(f"POST {url} answered {status} to {headers.get('Location')}: the instance is already "
                           "installed; remove its config.json and restart it to install again")
    try:
        reply = json.loads(body)
    except ValueError as exc:
        raise StandinError(f"POST {url} answered HTTP {status} with non-JSON {body[:200]!r}; "
                           "expected the AnQiCMS install API") from exc
    if status != 200 or reply.get("code") != 0:
        raise StandinError(f"install of {base_url} into database {database!r} on {db_host}:{db_port} failed: "
                           f"{reply.get('msg')!r}; expected code 0. Check the DB credentials and that the "
                           "admin password has 6+ characters.")


def version(base_url: str, timeout: float = 10) -> dict[str, Any]:
    """``GET /system/api/version/info``; raises StandinError unless it answers 200 with JSON."""
    url = base_url.rstrip("/") + "/system/api/version/info"
    status, headers, body = http(url, timeout=timeout)
    if status in (301, 302):
        raise StandinError(f"GET {url} answered {status} to {headers.get('Location')}: not installed yet")
    if status != 200:
        raise StandinError(f"GET {url} answered HTTP {status}, expected 200")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise StandinError(f"GET {url} answered non-JSON {body[:200]!r}") from exc
