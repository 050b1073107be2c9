"""Root filesystems for the test fleet's hosts, and the local apt repository they install from.

Three artefacts, built together once by ``mmdebstrap`` from the Debian registry and cached under ``.build/lab``:

- ``apt/<key>/``: a flat apt repository (``*.deb``, ``Packages``, ``Release``, indexed by ``apt-ftparchive``) holding
  every package of the provisioned image: the base system plus the closure of the packages the roles install
  (read from the roles' ``defaults/main.yml``) and python3-apt, which ``ansible.builtin.apt`` installs for itself;
  also the monitor role's packages (node_exporter, Prometheus, Alertmanager), which the images do not install.
- ``images/<key>/fresh/``: a minimal Debian 12 (``minbase`` + systemd, dbus, sshd, python3, iproute2), built from
  that repository, with nothing the roles install: what a user's first deploy meets.
- ``images/<key>/provisioned/``: the same base with the roles' packages installed and their services (MariaDB,
  nginx) enabled, for scenarios that do not test installation.

Both images' apt sources name only the local repository (``http://apt-mirror:8089/``), which the fleet serves on
its bridge address (``apt-mirror`` is in every host's /etc/hosts): hosts install offline and deterministically.
The key is a hash of everything that changes the result (suite, variant, package lists, registry sources, the
build recipe), so a changed role package list builds anew; a lock makes parallel test sessions build once, and
each build happens in a temporary directory renamed into place.

CLI (the venv's python, which has PyYAML):  python image.py build | path {fresh,provisioned,apt} | key
      python3 image.py serve DIRECTORY ADDRESS PORT LOGFILE   (the fleet's mirror server)
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("OPSGUARD_LAB_CACHE", str(REPO_ROOT / ".build" / "lab")))
SUITE = "bookworm"
VARIANT = "minbase"
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2")
# The Debian registry the repository is filled from (the same suites a Debian 12 server uses).
REGISTRY = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://security.debian.org/debian-security {SUITE}-security main",
)
# Variables of roles/<role>/defaults/main.yml that list the packages a role installs.
ROLE_PACKAGE_VARS = (("app", "app_packages"), ("database", "database_packages"), ("proxy", "proxy_packages"))
# Packages a role installs that the repository holds (with their closure, without Recommends, as the role installs
# them) but the provisioned image does not: their services would run on every host of every scenario.
MIRROR_ONLY_PACKAGE_VARS = (("monitor", "monitor_packages"), ("monitor", "monitor_prometheus_packages"))
# ansible.builtin.apt installs python3-apt by itself on a host without it (and cannot run in check mode before).
MODULE_PACKAGES = ("python3-apt",)
MIRROR_HOST = "apt-mirror"
MIRROR_PORT = 8089
# [trusted=yes]: the repository is unsigned; acceptable only for this local test mirror on the lab bridge.
SOURCES_LIST = (
    "# The test fleet's local apt repository (tests/lab/image.py), served on the lab bridge.\n"
    "# [trusted=yes]: it is unsigned; acceptable only for a local test mirror.\n"
    f"deb [trusted=yes] http://{MIRROR_HOST}:{MIRROR_PORT}/ ./\n"
)
KINDS = ("fresh", "provisioned")
RECIPE_VERSION = 2
BUILD_TIMEOUT = float(os.environ.get("OPSGUARD_LAB_IMAGE_TIMEOUT", "1800"))


class ImageError(RuntimeError):
    """An image or the repository could not be built; the message names the step and the fix."""


def _packages(variables: tuple[tuple[str, str], ...]) -> list[str]:
    import yaml  # pylint: disable=import-outside-toplevel

    packages: list[str] = []
    for role, var in variables:
        path = REPO_ROOT / "roles" / role / "defaults" / "main.yml"
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        value = data.get(var)
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            raise ImageError(f"{path}: {var} must be a list of Debian package names, found {value!r}")
        packages += [p for p in value if p not in packages]
    return packages


def role_packages() -> list[str]:
    """The packages the roles install and the provisioned image has, read from their defaults (one source of truth)."""
    return _packages(ROLE_PACKAGE_VARS)


def mirror_only_packages() -> list[str]:
    """The packages roles install that the repository holds but the provisioned image does not."""
    return _packages(MIRROR_ONLY_PACKAGE_VARS)


def recipe() -> dict:
    """Everything that changes the built artefacts; its hash is the cache key."""
    return {"version": RECIPE_VERSION, "suite": SUITE, "variant": VARIANT, "base": list(BASE_PACKAGES),
            "roles": role_packages(), "mirror_only": mirror_only_packages(), "module": list(MODULE_PACKAGES),
            "registry": list(REGISTRY), "sources": SOURCES_LIST}


def key() -> str:
    return hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:16]


def paths(build_key: str | None = None) -> dict[str, Path]:
    """Where the artefacts of `build_key` (default: the current recipe) live."""
    build_key = build_key or key()
    images = CACHE / "images" / build_key
    return {"apt": CACHE / "apt" / build_key, "images": images, "fresh": images / "fresh",
            "provisioned": images / "provisioned", "manifest": images / "manifest.json"}


def cached(build_key: str | None = None) -> bool:
    where = paths(build_key)
    return where["manifest"].is_file() and (where["apt"] / "Release").is_file()


@contextlib.contextmanager
def _lock(timeout: float) -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".build.lock", "a+", encoding="ascii") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ImageError(f"another process holds {CACHE / '.build.lock'} for {timeout:.0f} s (an image build); "
                                     "wait for it or end that process") from None
                time.sleep(1)
        yield


def _run(argv: list[str], log: Path, timeout: float) -> None:
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                                    timeout=timeout, check=False, env={**os.environ, "LANG": "C.UTF-8"})
        except subprocess.TimeoutExpired:
            raise ImageError(f"`{argv[0]}` did not finish within {timeout:.0f} s; see {log}") from None
    if result.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise ImageError(f"`{' '.join(argv[:3])} ...` exited {result.returncode} (log {log}):\n{tail}")


def _preflight() -> None:
    problems = []
    if os.geteuid() != 0:
        problems.append("not running as root: building the host images needs root")
    for tool, package in (("mmdebstrap", "mmdebstrap"), ("apt-ftparchive", "apt-utils")):
        if not shutil.which(tool):
            problems.append(f"{tool} is missing: `apt-get install {package}` (listed in hacking/apt-packages.txt)")
    if problems:
        raise ImageError("the test fleet's images cannot be built:\n  - " + "\n  - ".join(problems))


def _sources_hook() -> str:
    """A customize hook that leaves the local repository as the image's only apt source."""
    return ('rm -f "$1"/etc/apt/sources.list.d/*; printf %s ' + _sh_quote(SOURCES_LIST) + ' > "$1"/etc/apt/sources.list')


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def build(force: bool = False) -> dict[str, Path]:
    """Build (once) the repository and both images for the current recipe; return their paths.

    A second call finds them cached and returns at once; parallel callers wait on a lock and build once.
    """
    build_key = key()
    where = paths(build_key)
    if cached(build_key) and not force:
        return where
    _preflight()
    with _lock(BUILD_TIMEOUT):
        if cached(build_key) and not force:
            return where
        work = CACHE / f"tmp-{build_key}-{os.getpid()}"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        log = work / "build.log"
        try:
            timings = _build_into(work, log)
            manifest = {"key": build_key, "recipe": recipe(), "timings": timings,
                        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            (work / "images" / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
            for name in ("apt", "images"):
                target = where[name]
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():
                    shutil.rmtree(target)
                # the repository first: the images' manifest is what marks the whole build as done
                (work / name).rename(target)
            shutil.copy(log, where["images"] / "build.log")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return where


def _build_into(work: Path, log: Path) -> dict[str, float]:
    timings: dict[str, float] = {}
    apt_dir, images, lists = work / "apt", work / "images", work / "lists"
    for path in (apt_dir, images, lists):
        path.mkdir()
    everything = [*BASE_PACKAGES, *role_packages(), *MODULE_PACKAGES]
    mirror_only = mirror_only_packages()
    # 1. The provisioned image from the registry; every .deb it installed (also the essential ones) is kept
    #    and copied out: that is the repository's content, with the mirror-only packages downloaded (not installed)
    #    by mmdebstrap's own apt configuration.
    start = time.monotonic()
    download = ('APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-get --yes --download-only --no-install-recommends install '
                + " ".join(_sh_quote(p) for p in mirror_only))
    _run(["mmdebstrap", f"--variant={VARIANT}", "--mode=root", "--format=directory", "--skip=essential/unlink",
          f"--include={','.join(everything)}",
          *([f"--customize-hook={download}"] if mirror_only else []),
          f"--customize-hook=sync-out /var/cache/apt/archives {apt_dir}",
          f"--customize-hook=sync-out /var/lib/apt/lists {lists}",
          f"--customize-hook={_sources_hook()}",
          SUITE, str(images / "provisioned"), *REGISTRY], log, BUILD_TIMEOUT)
    timings["provisioned_image_seconds"] = round(time.monotonic() - start, 1)
    # 2. Index the repository.
    start = time.monotonic()
    for leftover in ("lock", "partial"):
        path = apt_dir / leftover
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    # Priority and Section as the registry's index has them (a .deb's own control file may differ, e.g. apt says
    # `important` where the archive says `required`): mmdebstrap's minbase selects by them.
    override = work / "override"
    override.write_text("".join(f"{name} {priority} {section}\n" for name, (priority, section) in sorted(_archive_fields(lists).items())),
                        encoding="utf-8")
    with open(apt_dir / "Packages", "wb") as out:
        subprocess.run(["apt-ftparchive", "packages", ".", str(override)], cwd=apt_dir, stdout=out, stderr=subprocess.DEVNULL,  # noqa: S603,S607
                       check=True, timeout=600)
    release = subprocess.run(["apt-ftparchive", "-o", f"APT::FTPArchive::Release::Suite={SUITE}", "release", "."],  # noqa: S603,S607
                             cwd=apt_dir, capture_output=True, check=True, timeout=600).stdout
    (apt_dir / "Release").write_bytes(release)
    timings["repository_seconds"] = round(time.monotonic() - start, 1)
    # 3. The fresh image from that repository only: the same package versions, no network.
    start = time.monotonic()
    _run(["mmdebstrap", f"--variant={VARIANT}", "--mode=root", "--format=directory",
          f"--include={','.join(BASE_PACKAGES)}",
          "--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount",
          f"--customize-hook={_sources_hook()}",
          SUITE, str(images / "fresh"), f"deb [trusted=yes] file://{apt_dir} ./"], log, BUILD_TIMEOUT)
    timings["fresh_image_seconds"] = round(time.monotonic() - start, 1)
    return timings


def _archive_fields(lists: Path) -> dict[str, tuple[str, str]]:
    """Package -> (Priority, Section) from the registry's Packages indices that apt downloaded."""
    fields: dict[str, tuple[str, str]] = {}
    for index in sorted(lists.glob("*_Packages")):
        for block in index.read_text(encoding="utf-8", errors="replace").split("\n\n"):
            entry = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(" "))
            if "Package" in entry and "Priority" in entry:
                fields[entry["Package"]] = (entry["Priority"], entry.get("Section", "misc"))
    if not fields:
        raise ImageError(f"no Packages index of the registry was found in {lists} (apt's lists of the image build)")
    return fields


def manifest(build_key: str | None = None) -> dict:
    return json.loads(paths(build_key)["manifest"].read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the mirror server


def serve(directory: str, address: str, port: int) -> None:
    """Serve `directory` read-only over HTTP on address:port until killed (quiet: no per-request log)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:  # noqa: A002  pylint: disable=redefined-builtin
            pass

    server = http.server.ThreadingHTTPServer((address, port), functools.partial(Handler, directory=directory))
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The test fleet's host images and local apt repository.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="build what is not cached yet and print the paths")
    p_build.add_argument("--force", action="store_true", help="build again even when cached")
    sub.add_parser("key", help="print the cache key of the current recipe")
    p_path = sub.add_parser("path", help="print the path of an artefact")
    p_path.add_argument("what", choices=("fresh", "provisioned", "apt"))
    p_serve = sub.add_parser("serve", help="serve the repository (used by fleet.py)")
    p_serve.add_argument("directory")
    p_serve.add_argument("address")
    p_serve.add_argument("port", type=int)
    p_serve.add_argument("logfile", help="the fleet's log file (names the lab in the command line)")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            start = time.monotonic()
            where = build(force=args.force)
            print(json.dumps({k: str(v) for k, v in where.items()} | {"seconds": round(time.monotonic() - start, 1)}))
        elif args.command == "key":
            print(key())
        elif args.command == "path":
            print(paths()[args.what])
        else:
            serve(args.directory, args.address, args.port)
    except ImageError as exc:
        print(f"image.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
