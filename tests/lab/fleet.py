"""A fleet of real Linux hosts on one machine, for tests of the opsguard.anqicms collection.

Each host is a set of namespaces (network, PID, mount, UTS, IPC, cgroup) with systemd as
PID 1, its own cgroup subtree in every hierarchy (memory limit = what the host sees as its
root limit), tmpfs on /run /tmp, a veth on a Linux bridge, sshd with a per-lab key for root.
Its files (``image``):
- ``machine`` (default): overlays on /etc /var /opt /root /srv /home over the machine's own, which
  shares the machine's /usr and installed packages; MariaDB and nginx are the machine's enabled services.
  root's shell startup files are plain ones of the host's own (``ROOT_SHELL_FILES``), not the machine user's.
- ``fresh``: its own root filesystem, an overlay of a minimal Debian 12 image (tests/lab/image.py)
  with nothing the roles install; ``provisioned``: the same with the roles' packages installed
  (MariaDB and nginx enabled). Both install packages only from the lab's local apt repository,
  served on the bridge address (``apt-mirror`` in /etc/hosts) while the fleet is up.

CLI:  python3 fleet.py [--name NAME] up --hosts N [--memory SIZE] [--image KIND] | status | inventory [PATH] | down
      | cut HOST | heal HOST | freeze HOST | thaw HOST | kill HOST
Library: ``import fleet; f = fleet.up(2, memory="512M"); f.exec("node1", "systemctl is-active mariadb")``.

A lab *name* (``--name``, env ``OPSGUARD_LAB_NAME``, default ``oglab``) selects the state dir,
bridge, subnet, network namespaces and cgroup subtree, so labs with different names coexist;
``derived_name(suffix)`` names a further lab of the same run (``<name>-<suffix>``).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

if str(Path(__file__).resolve().parents[2] / ".collections") not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))
from ansible_collections.opsguard.anqicms.tests.utils import ansible_runner  # noqa: E402  pylint: disable=wrong-import-position

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import image as host_image  # noqa: E402  pylint: disable=wrong-import-position

DEFAULT_NAME = "oglab"
LAB_ROOT = Path(os.environ.get("OPSGUARD_LAB_ROOT", "/tmp/opsguard-lab"))
REPO_ROOT = Path(__file__).resolve().parents[2]
OVERLAID = ("etc", "var", "opt", "root", "srv", "home")
# A test host's root shell startup files (``machine`` image): plain, as on a fresh Debian host. The
# machine's own (a pyenv init in /root/.bashrc, say) would otherwise run on every SSH command.
ROOT_SHELL_FILES = {
    ".bashrc": "# ~/.bashrc of a test host (tests/lab/fleet.py): nothing of the machine's own\n",
    ".profile": "# ~/.profile of a test host (tests/lab/fleet.py)\nif [ -n \"$BASH\" ] && [ -f ~/.bashrc ]; then . ~/.bashrc; fi\n",
    ".bash_profile": "# ~/.bash_profile of a test host (tests/lab/fleet.py)\n. ~/.profile\n",
}
# Units that cannot work or are not wanted in a host: the gettys (no tty in a namespace: they
# leave the host `degraded`), and the machine's PostgreSQL and exim4 (not part of the stack; exim4
# alone takes 30 s to start without DNS).
# apt's daily timers are masked too: an unattended `apt-get update` must not take the dpkg lock during a test. The
# password agents' path units (no password is ever asked in a host) would each take an inotify instance, which the
# machine counts for all fleets together: when they run out, those units fail and leave the host `degraded`.
MASKED_UNITS = ("getty@tty1.service", "console-getty.service", "postgresql.service", "postgresql@15-main.service",
                "e2scrub_reap.service", "exim4.service", "apt-daily.timer", "apt-daily-upgrade.timer",
                "systemd-ask-password-console.path", "systemd-ask-password-wall.path")
IMAGES = ("machine", "fresh", "provisioned")
SYSTEMD = "/lib/systemd/systemd"
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_HOSTS = 100
BOOT_TIMEOUT = float(os.environ.get("OPSGUARD_LAB_BOOT_TIMEOUT", "120"))
SSH_OPTS = (
    "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2",
)
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
HOST_RE = re.compile(r"^node([1-9][0-9]*)$")


# Launchers started by this process, per lab name: reaped on teardown so no zombie stays behind.
_LAUNCHERS: dict[str, list[int]] = {}


class LabError(RuntimeError):
    """A lab operation failed; the message names the object, the expectation and the fix."""


class CommandError(subprocess.CalledProcessError):
    """A command in a host (exec or ssh) exited non-zero with check=True."""

    def __init__(self, host: str, how: str, exc: subprocess.CalledProcessError) -> None:
        super().__init__(exc.returncode, exc.cmd, exc.stdout, exc.stderr)
        self.host, self.how = host, how

    def __str__(self) -> str:
        cmd = self.cmd[-1] if isinstance(self.cmd, list) else self.cmd
        return (f"host {self.host}: {self.how} `{cmd}` exited {self.returncode}\n"
                f"stdout: {str(self.stdout)[-2000:]}\nstderr: {str(self.stderr)[-2000:]}")


# --------------------------------------------------------------------------- naming


@dataclasses.dataclass(frozen=True)
class Names:
    """Every system object name derived from a lab name."""

    name: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    @property
    def state_dir(self) -> Path:
        return LAB_ROOT / self.name

    @property
    def lock_path(self) -> Path:
        return LAB_ROOT / f".{self.name}.lock"

    @property
    def bridge(self) -> str:
        return f"ogbr{self.digest[:8]}"

    def veth(self, index: int) -> str:
        return f"ogv{self.digest[:7]}-{index}"

    def netns(self, host: str) -> str:
        return f"oglab-{self.name}-{host}"

    @property
    def cgroup_dir(self) -> str:
        return f"opsguard-lab-{self.name}"

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        number = int(self.digest[:8], 16)
        return ipaddress.IPv4Network(f"10.{200 + number % 50}.{(number // 50) % 256}.0/24")

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def address(self, index: int) -> str:
        return str(self.subnet.network_address + 10 + index)


def lab_name(name: str | None = None) -> str:
    """The lab name from the argument, OPSGUARD_LAB_NAME or the default, validated."""
    name = name or os.environ.get("OPSGUARD_LAB_NAME") or DEFAULT_NAME
    if not NAME_RE.match(name):
        raise LabError(f"lab name {name!r} is invalid: expected 1-20 characters [a-z0-9-] starting with a letter; "
                       "set --name / OPSGUARD_LAB_NAME accordingly")
    return name


def derived_name(suffix: str, base: str | None = None) -> str:
    """The name of a further lab of the same run: ``<base>-<suffix>``, base = lab_name(base) cut to keep 20 characters.

    Scenario modules that bring up a fleet of their own use this, so their lab never replaces the session lab
    (OPSGUARD_LAB_NAME) nor one of another pytest worker.
    """
    if not re.fullmatch(r"[a-z0-9]{1,8}", suffix):
        raise LabError(f"lab name suffix {suffix!r} is invalid: expected 1-8 characters [a-z0-9]")
    return lab_name(f"{lab_name(base)[:19 - len(suffix)].rstrip('-')}-{suffix}")


def parse_size(size: str | int | None) -> int | None:
    """'512M' / '1G' / '1048576' / 1048576 -> bytes; None -> None (no limit)."""
    if size is None:
        return None
    if isinstance(size, int):
        value = size
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B)?\s*", str(size), re.IGNORECASE)
        if not match:
            raise LabError(f"memory size {size!r} is invalid: expected bytes or a number with K/M/G/T, e.g. 512M")
        value = int(match.group(1)) * 1024 ** " KMGT".index((match.group(2) or " ").upper())
    if value < 64 * 1024 * 1024:
        raise LabError(f"memory size {size!r} is too small for a host running systemd, sshd, MariaDB and nginx: use at least 64M")
    return value


# --------------------------------------------------------------------------- helpers


def _run(argv: list[str], *, check: bool = True, timeout: float = 30, input: str | bytes | None = None,
         text: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a command in its own process group; on timeout the whole group is killed.

    Never waits without bound: a process stuck in a frozen cgroup (it dies on thaw) is left behind
    after the timeout instead of hanging the caller.
    """
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,  # pylint: disable=consider-using-with
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            out, err = ("", "") if text else (b"", b"")
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        raise subprocess.TimeoutExpired(argv, timeout, out, err) from None
    result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, argv, out, err)
    return result


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run(["ip", *args], check=check, timeout=15)


def _read(path: str | Path, default: str = "") -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return default


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), the identity of a PID."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _pid_alive(pid: int, start_time: int | None) -> bool:
    return pid > 0 and start_time is not None and _start_time(pid) == start_time


def _cgroup_mounts() -> dict[str, tuple[str, str]]:
    """Hierarchy key (as in /proc/self/cgroup) -> (mount point, mount root) for the machine's cgroup mounts."""
    mounts: dict[str, tuple[str, str]] = {}
    for line in _read("/proc/self/mountinfo").splitlines():
        pre, post = line.split(" - ", 1) if " - " in line else (line, "")
        fields, post_fields = pre.split(), post.split()
        if len(post_fields) < 3 or post_fields[0] not in ("cgroup", "cgroup2"):
            continue
        if post_fields[0] == "cgroup2":
            mounts.setdefault("", (fields[4], fields[3]))
            continue
        opts = post_fields[2].split(",")
        controllers = [o for o in opts if o not in ("rw", "ro") and "=" not in o and o not in ("none", "xattr", "noprefix")
                       and not o.startswith("clone_children") and not o.startswith("cpuset_v2_mode")]
        controllers += [o for o in opts if o.startswith("name=")]
        mounts.setdefault(",".join(sorted(controllers)), (fields[4], fields[3]))
    return mounts


def _own_cgroups() -> dict[str, str]:
    """Hierarchy key -> this process's cgroup path, for every hierarchy in /proc/self/cgroup."""
    result = {}
    for line in _read("/proc/self/cgroup").splitlines():
        controllers, path = line.split(":", 2)[1:]
        result[",".join(sorted(controllers.split(","))) if controllers else ""] = path
    return result


def _mount_options(key: str) -> list[str]:
    """mount(8) arguments that mount hierarchy `key` again (inside a cgroup namespace)."""
    if key == "":
        return ["-t", "cgroup2", "cgroup2"]
    parts = key.split(",")
    if all(p.startswith("name=") for p in parts):
        parts = ["none", *parts]
    return ["-t", "cgroup", "-o", ",".join(parts), "cgroup"]


def _mount_dir_name(key: str) -> str:
    if key == "":
        return "unified"
    names = [p[5:] for p in key.split(",") if p.startswith("name=")]
    return names[0] if names else key


def _processes_in(cgroup: Path) -> set[int]:
    pids: set[int] = set()
    if not cgroup.is_dir():
        return pids
    for dirpath, _dirs, files in os.walk(cgroup):
        if "cgroup.procs" in files:
            pids.update(int(p) for p in _read(Path(dirpath) / "cgroup.procs").split() if p.isdigit())
    return pids


def _rmdir_tree(cgroup: Path) -> None:
    """Remove a cgroup subtree depth-first (cgroup dirs are removed with rmdir only)."""
    if not cgroup.is_dir():
        return
    for dirpath, _dirs, _files in sorted(os.walk(cgroup), key=lambda item: -item[0].count("/")):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(dirpath)


def _find_lab_cgroups(names: Names) -> list[Path]:
    """Every cgroup directory of this lab (any parent, bounded depth), also without a state file."""
    found = []
    for mount_point, _root in _cgroup_mounts().values():
        base_depth = mount_point.rstrip("/").count("/")
        for dirpath, dirs, _files in os.walk(mount_point):
            if dirpath.count("/") - base_depth >= 4:
                dirs[:] = []
                continue
            if names.cgroup_dir in dirs:
                found.append(Path(dirpath) / names.cgroup_dir)
                dirs.remove(names.cgroup_dir)
            dirs[:] = [d for d in dirs if not d.startswith("opsguard-lab-")]
    return found


def _write(path: Path, value: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(value)


@contextlib.contextmanager
def _lock(names: Names) -> Iterator[None]:
    LAB_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(names.lock_path, "a+", encoding="ascii") as handle:
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(f"lab {names.name!r}: another fleet.py holds {names.lock_path} for 10 minutes; "
                                   "wait for it or end that process") from None
                time.sleep(0.5)
        yield


def preflight(image: str = "machine") -> None:
    """Stop with a clear message when root or a kernel feature / tool is missing."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not running as root: run fleet.py (and the lab tests) as root, e.g. with sudo")
    if "overlay" not in _read("/proc/filesystems"):
        problems.append("overlayfs is not available: load it with `modprobe overlay`")
    for ns in ("net", "pid", "mnt", "uts", "ipc", "cgroup"):
        if not os.path.exists(f"/proc/self/ns/{ns}"):
            problems.append(f"the kernel has no {ns} namespaces (/proc/self/ns/{ns} missing): use a kernel with CONFIG_{ns.upper()}_NS")
    mounts = _cgroup_mounts()
    if "memory" not in mounts:
        problems.append("no cgroup v1 memory controller is mounted: mount it at /sys/fs/cgroup/memory "
                        "(`mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory`)")
    if "freezer" not in mounts:
        problems.append("no cgroup v1 freezer controller is mounted (needed by freeze/thaw): mount it at /sys/fs/cgroup/freezer")
    if not os.access(SYSTEMD, os.X_OK):
        problems.append(f"{SYSTEMD} is missing: `apt-get install systemd`")
    tools = [("ip", "iproute2"), ("nsenter", "util-linux"), ("unshare", "util-linux"), ("ssh", "openssh-client"),
             ("ssh-keygen", "openssh-client"), ("/usr/bin/python3", "python3")]
    if image == "machine":
        tools += [("/usr/sbin/sshd", "openssh-server"), ("/usr/sbin/mariadbd", "mariadb-server"), ("/usr/sbin/nginx", "nginx")]
    else:
        tools += [("pivot_root", "util-linux"), ("mmdebstrap", "mmdebstrap"), ("apt-ftparchive", "apt-utils")]
    for tool, package in tools:
        if not shutil.which(tool):
            problems.append(f"{tool} is missing: `apt-get install {package}`")
    if problems:
        raise LabError("the test fleet cannot start on this machine:\n  - " + "\n  - ".join(problems))


# --------------------------------------------------------------------------- model


@dataclasses.dataclass
class Host:
    """One host of the fleet."""

    name: str
    index: int
    address: str
    pid: int
    start_time: int | None
    launcher_pid: int
    netns: str
    veth: str
    cgroups: dict[str, str]
    state_dir: str

    def alive(self) -> bool:
        return _pid_alive(self.pid, self.start_time)

    def cgroup(self, key: str) -> Path:
        if key not in self.cgroups:
            raise LabError(f"host {self.name}: no cgroup in the {key or 'unified'} hierarchy was recorded")
        return Path(self.cgroups[key])


class Fleet:
    """A running fleet, as recorded in its state file."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.name: str = state["name"]
        self.names = Names(self.name)
        self.memory: int | None = state.get("memory")
        self.state_dir = Path(state["state_dir"])
        self.hosts: list[Host] = [Host(**h) for h in state["hosts"]]
        self.lab_cgroups: list[str] = state.get("lab_cgroups", [])
        self.image: str = state.get("image", "machine")
        self.ssh_key = str(self.state_dir / "id_ed25519")
        self.inventory_path = str(self.state_dir / "inventory.yml")

    def __repr__(self) -> str:
        return f"<Fleet {self.name}: {', '.join(f'{h.name}={h.address}' for h in self.hosts)}>"

    def host(self, name: str | Host) -> Host:
        if isinstance(name, Host):
            return name
        for host in self.hosts:
            if host.name == name:
                return host
        raise LabError(f"lab {self.name!r} has no host {name!r}: its hosts are {', '.join(h.name for h in self.hosts)}")

    def _live(self, name: str | Host) -> Host:
        host = self.host(name)
        if not host.alive():
            raise LabError(f"host {host.name} of lab {self.name!r} is not running (PID {host.pid} is gone): "
                           "bring the fleet up again (fleet.py up)")
        return host

    # ------------------------------------------------------------------ running commands

    def _nsenter(self, host: Host, argv: list[str]) -> list[str]:
        procs = [str(Path(path) / "cgroup.procs") for path in host.cgroups.values()]
        mover = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"'
        return ["sh", "-c", mover, "sh", str(len(procs)), *procs,
                "nsenter", "-t", str(host.pid), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w", "--",
                "env", "-i", f"PATH={HOST_PATH}", "HOME=/root", "LANG=C.UTF-8", "TERM=dumb", "USER=root", *argv]

    def exec(self, host: str | Host, cmd: str | list[str], check: bool = True, timeout: float = 60,
             input: str | None = None) -> subprocess.CompletedProcess:
        """Run cmd inside the host's namespaces and cgroups (str = `sh -c`), text output."""
        live = self._live(host)
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        try:
            return _run(self._nsenter(live, argv), check=check, timeout=timeout, input=input)
        except subprocess.CalledProcessError as exc:
            raise CommandError(live.name, "exec", exc) from None

    def ssh_argv(self, host: str | Host) -> list[str]:
        return ["ssh", "-i", self.ssh_key, *SSH_OPTS, "-l", "root", self.host(host).address]

    def ssh(self, host: str | Host, cmd: str | list[str], check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run cmd on the host over real SSH."""
        target = self.host(host)
        remote = cmd if isinstance(cmd, str) else shlex.join(cmd)
        try:
            return _run([*self.ssh_argv(target), "--", remote], check=check, timeout=timeout)
        except subprocess.CalledProcessError as exc:
            raise CommandError(f"{target.name} ({target.address})", "ssh", exc) from None

    def put(self, host: str | Host, local_path: str | Path, remote_path: str, mode: int = 0o644) -> None:
        """Copy a local file into the host's filesystem (parent dirs are created)."""
        live = self._live(host)
        data = Path(local_path).read_bytes()
        script = 'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"'
        result = _run(self._nsenter(live, ["sh", "-c", script, "sh", remote_path, f"{mode:o}"]), check=False,
                      timeout=60, input=data, text=False)
        if result.returncode != 0:
            raise LabError(f"host {live.name}: copying {local_path} to {remote_path} failed: {result.stderr.decode(errors='replace')}")

    # ------------------------------------------------------------------ memory and faults

    def set_memory_limit(self, host: str | Host, size: str | int | None) -> None:
        """Set the cgroup memory limit of the whole host (None = unlimited)."""
        target = self.host(host)
        _set_memory_limit(target.cgroup("memory"), parse_size(size))

    def memory_limit(self, host: str | Host) -> int | None:
        value = int(_read(self.host(host).cgroup("memory") / "memory.limit_in_bytes", "0"))
        return None if value >= 2 ** 62 else value

    def memory_usage(self, host: str | Host) -> int:
        return int(_read(self.host(host).cgroup("memory") / "memory.usage_in_bytes", "0"))

    def link_up(self, host: str | Host) -> bool:
        result = _ip("-j", "link", "show", "dev", self.host(host).veth, check=False)
        return result.returncode == 0 and "UP" in json.loads(result.stdout or "[{}]")[0].get("flags", [])

    def cut(self, host: str | Host) -> None:
        """Take the host's network down (its veth on the bridge)."""
        _ip("link", "set", "dev", self.host(host).veth, "down")

    def heal(self, host: str | Host) -> None:
        _ip("link", "set", "dev", self.host(host).veth, "up")

    def frozen(self, host: str | Host) -> bool:
        return _read(self.host(host).cgroup("freezer") / "freezer.state") == "FROZEN"

    def freeze(self, host: str | Host) -> None:
        """Freeze every process of the host (cgroup freezer)."""
        self._freezer(self._live(host), "FROZEN")

    def thaw(self, host: str | Host) -> None:
        self._freezer(self.host(host), "THAWED")

    def _freezer(self, host: Host, state: str) -> None:
        path = host.cgroup("freezer") / "freezer.state"
        _write(path, state)
        deadline = time.monotonic() + 15
        while _read(path) != state:
            if time.monotonic() > deadline:
                raise LabError(f"host {host.name}: {path} did not reach {state} within 15 s (reads {_read(path)!r})")
            time.sleep(0.05)

    def kill(self, host: str | Host) -> None:
        """SIGKILL the host's PID 1: the kernel ends every process of the host."""
        target = self._live(host)
        os.kill(target.pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while target.alive():
            if time.monotonic() > deadline:
                raise LabError(f"host {target.name}: PID {target.pid} survived SIGKILL for 15 s")
            time.sleep(0.05)

    # ------------------------------------------------------------------ status

    def system_state(self, host: str | Host, timeout: float = 10) -> str:
        """systemd's state in the host ('running', 'degraded', ...), or 'dead' / 'frozen' / 'unknown'."""
        target = self.host(host)
        if not target.alive():
            return "dead"
        if self.frozen(target):
            return "frozen"
        try:
            return self.exec(target, ["systemctl", "is-system-running"], check=False, timeout=timeout).stdout.strip() or "unknown"
        except subprocess.TimeoutExpired:
            return "unknown (no answer)"

    def diagnostics(self, host: str | Host) -> str:
        """`systemctl --failed` and the journal tail of a host, for error messages."""
        target = self.host(host)
        if not target.alive():
            return f"host {target.name}: PID 1 ({target.pid}) is gone; launcher log:\n" + _read(Path(target.state_dir) / "boot.log")[-3000:]
        parts = []
        for argv in (["systemctl", "--failed", "--no-legend", "--no-pager"], ["systemctl", "list-jobs", "--no-pager"],
                     ["journalctl", "-b", "-n", "40", "--no-pager", "-o", "short-monotonic"]):
            try:
                result = self.exec(target, argv, check=False, timeout=15)
                parts.append(f"$ {shlex.join(argv)}\n{result.stdout}{result.stderr}")
            except (subprocess.TimeoutExpired, LabError) as exc:
                parts.append(f"$ {shlex.join(argv)}\n(no answer: {exc})")
        return f"host {target.name} diagnostics:\n" + "\n".join(parts)

    def status(self) -> list[dict[str, Any]]:
        rows = []
        for host in self.hosts:
            rows.append({"host": host.name, "address": host.address, "pid": host.pid if host.alive() else None,
                         "state": self.system_state(host), "network": "up" if self.link_up(host) else "cut",
                         "memory_limit": self.memory_limit(host), "memory_usage": self.memory_usage(host)})
        return rows

    # ------------------------------------------------------------------ ansible

    def write_inventory(self, path: str | Path | None = None) -> str:
        """Write the Ansible inventory (YAML) and return its path."""
        target = Path(path) if path else Path(self.inventory_path)
        hosts = "".join(f"        {h.name}:\n          ansible_host: {h.address}\n" for h in self.hosts)
        members = "".join(f"        {h.name}:\n" for h in self.hosts)
        text = (
            f"# Test fleet {self.name!r} (tests/lab/fleet.py); regenerated on every `up`.\n"
            "all:\n"
            "  vars:\n"
            "    ansible_user: root\n"
            f"    ansible_ssh_private_key_file: {self.ssh_key}\n"
            "    ansible_python_interpreter: /usr/bin/python3\n"
            "    ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR\n"
            f"    ansible_control_path_dir: {self.state_dir / 'cp'}\n"
            "    ansible_connection: ssh\n"
            "  children:\n"
            "    fleet:\n      hosts:\n" + hosts +
            "".join(f"    {group}:\n      hosts:\n{members}" for group in ("app", "database", "proxy"))
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        return str(target)

    def ansible_env(self) -> dict[str, str]:
        """Environment of an ansible run against the fleet; SSH pipelining as in the repository's ansible.cfg, also
        for runs from another working directory (one SSH command per module run instead of several)."""
        env = dict(os.environ)
        paths = [str(REPO_ROOT / ".collections")] + [p for p in env.get("ANSIBLE_COLLECTIONS_PATH", "").split(":") if p]
        env.update({"ANSIBLE_COLLECTIONS_PATH": ":".join(dict.fromkeys(paths)), "ANSIBLE_HOST_KEY_CHECKING": "False",
                    "ANSIBLE_RETRY_FILES_ENABLED": "False", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
                    "ANSIBLE_INVENTORY": self.inventory_path, "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
                    "ANSIBLE_LOCAL_TEMP": str(self.state_dir / "ansible-local"), "ANSIBLE_PIPELINING": "True"})
        return env

    def run_module(self, host: str | Host, module: str, args: dict[str, Any], check: bool = False, timeout: float = 120) -> dict[str, Any]:
        """Run one module on one host over SSH; return its result dict."""
        target = self.host(host)
        play = [{"hosts": target.name, "gather_facts": False, "tasks": [{"name": f"run {module}", module: args, "check_mode": check}]}]
        with _private_file(self.state_dir, "play-", ".yml", json.dumps(play)) as playbook:
            env = self.ansible_env()
            env.update(ansible_runner.JSON_CALLBACK)
            result = _run([_tool("ansible-playbook"), "-i", self.inventory_path, playbook], check=False, timeout=timeout, env=env)
        answer = ansible_runner.host_result(ansible_runner.json_report(result.stdout), target.name)
        if answer is None:
            return {"failed": True, "msg": f"ansible-playbook exited {result.returncode} without a result for {target.name}",
                    "stdout": result.stdout[-4000:], "stderr": result.stderr[-4000:]}
        return answer

    def playbook(self, path: str | Path, extra_vars: dict[str, Any] | None = None, check: bool = False,
                 limit: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run ansible-playbook against the fleet; extra vars go through a private file, never the command line."""
        argv = [_tool("ansible-playbook"), "-i", self.inventory_path, str(path)]
        if check:
            argv.append("--check")
        if limit:
            argv += ["--limit", limit]
        with _private_file(self.state_dir, "vars-", ".json", json.dumps(extra_vars or {})) as vars_file:
            argv += ["-e", f"@{vars_file}"]
            return _run(argv, check=False, timeout=timeout, env=self.ansible_env())

    def ansible(self, pattern: str, module: str, args: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
        """Ad-hoc `ansible PATTERN -m MODULE` with the fleet inventory."""
        argv = [_tool("ansible"), pattern, "-i", self.inventory_path, "-m", module]
        if args:
            argv += ["-a", args]
        return _run(argv, check=False, timeout=timeout, env=self.ansible_env())


_private_file = ansible_runner.private_file


def _tool(name: str) -> str:
    try:
        return ansible_runner.tool(name)
    except FileNotFoundError as exc:
        raise LabError(str(exc)) from None


def _set_memory_limit(cgroup: Path, limit: int | None) -> None:
    value = "-1" if limit is None else str(limit)
    limit_file, memsw_file = cgroup / "memory.limit_in_bytes", cgroup / "memory.memsw.limit_in_bytes"
    files = [limit_file] + ([memsw_file] if memsw_file.exists() else [])
    try:
        for path in files:
            _write(path, value)
    except OSError as exc:
        if exc.errno != errno.EINVAL or len(files) == 1:
            raise LabError(f"cannot write {value} to {cgroup}: {exc}") from exc
        # memsw must stay >= the limit: raising means memsw first.
        for path in reversed(files):
            _write(path, value)


# --------------------------------------------------------------------------- state


def _state_file(names: Names) -> Path:
    return names.state_dir / "state.json"


def current(name: str | None = None) -> Fleet | None:
    """The fleet recorded in the state dir of lab `name` (it may have dead hosts), or None."""
    names = Names(lab_name(name))
    try:
        return Fleet(json.loads(_state_file(names).read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


def _save(names: Names, state: dict[str, Any]) -> None:
    path = _state_file(names)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    tmp.rename(path)


# --------------------------------------------------------------------------- down


def down(name: str | None = None) -> None:
    """Remove every trace of lab `name`: processes, netns, veths, bridge, mounts, cgroups, state dir. Idempotent."""
    names = Names(lab_name(name))
    if os.geteuid() != 0:
        raise LabError("fleet.py down needs root: run it as root")
    with _lock(names):
        _teardown(names)
    with contextlib.suppress(FileNotFoundError):
        names.lock_path.unlink()
    with contextlib.suppress(OSError):
        LAB_ROOT.rmdir()


def _teardown(names: Names) -> None:
    state: dict[str, Any] = {}
    with contextlib.suppress(FileNotFoundError, ValueError):
        state = json.loads(_state_file(names).read_text(encoding="utf-8"))
    hosts = state.get("hosts", [])
    cgroup_roots = {Path(p) for p in state.get("lab_cgroups", [])} | set(_find_lab_cgroups(names))
    freezer_roots = [p for p in cgroup_roots if (p / "freezer.state").exists() or "freezer" in str(p)]
    # 1. thaw (a frozen process cannot act on a signal), then an orderly poweroff of every live host.
    for root in freezer_roots:
        for dirpath, _dirs, files in os.walk(root):
            if "freezer.state" in files:
                with contextlib.suppress(OSError):
                    _write(Path(dirpath) / "freezer.state", "THAWED")
    # The signal is repeated every second: a PID 1 that is still the boot script, or a systemd that
    # has not yet installed its handlers, drops it.
    live = [h for h in hosts if _pid_alive(h["pid"], h.get("start_time"))]
    deadline, next_signal = time.monotonic() + 20, 0.0
    while True:
        live = [h for h in live if _pid_alive(h["pid"], h.get("start_time"))]
        if not live or time.monotonic() > deadline:
            break
        if time.monotonic() >= next_signal:
            for host in live:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(host["pid"], signal.SIGRTMIN + 4)
            next_signal = time.monotonic() + 1
        time.sleep(0.1)
    for host in live:
        if _pid_alive(host["pid"], host.get("start_time")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(host["pid"], signal.SIGKILL)
    # 2. whatever is still in the lab's cgroups is ours by construction: SIGKILL it, bounded.
    deadline = time.monotonic() + 20
    while True:
        pids = set().union(*(_processes_in(root) for root in cgroup_roots)) if cgroup_roots else set()
        pids.discard(os.getpid())
        if not pids:
            break
        if time.monotonic() > deadline:
            raise LabError(f"lab {names.name!r}: processes {sorted(pids)} stay in {sorted(map(str, cgroup_roots))} after SIGKILL; "
                           "check for processes in uninterruptible sleep (ps -o pid,stat,cmd) and run `fleet.py down` again")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    # 3. reap launchers started by this very process (else they stay as zombies), then the ssh
    #    connection masters that ansible left for this lab (identified by the lab's control path dir).
    _stop_mirror(names, state.get("mirror"))
    for pid in _LAUNCHERS.pop(names.name, []):
        _reap(pid)
    _kill_ssh_masters(names)
    # 4. cgroups, network namespaces, veths, bridge.
    for root in cgroup_roots:
        _rmdir_tree(root)
    leftover = [str(root) for root in cgroup_roots if root.exists()]
    for netns in _lab_netns(names):
        _ip("netns", "delete", netns, check=False)
    for link in _lab_links(names):
        _ip("link", "delete", "dev", link, check=False)
    # 5. mounts under the state dir (none normally: overlays live in the hosts' own mount namespaces).
    for mount_point in sorted(_mounts_under(names.state_dir), reverse=True):
        _run(["umount", "-l", mount_point], check=False)
    if names.state_dir.exists():
        shutil.rmtree(names.state_dir)
    if leftover:
        raise LabError(f"lab {names.name!r}: cgroups {leftover} could not be removed; see `cat <dir>/cgroup.procs` and run down again")


def _reap(pid: int) -> None:
    """Collect the exit status of a launcher that is a child of this process (bounded wait)."""
    deadline = time.monotonic() + 5
    while pid > 0 and time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            return
        time.sleep(0.05)


def _stop_mirror(names: Names, record: dict[str, Any] | None) -> None:
    """End the lab's apt mirror server: the recorded one, and any other whose command line names this lab's state dir."""
    pids = []
    if record and _pid_alive(record.get("pid", 0), record.get("start_time")):
        pids.append(record["pid"])
    marker = str(names.state_dir) + "/"
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in pids:
            argv = _read(f"/proc/{entry}/cmdline").split("\0")
            if "serve" in argv and any(a.endswith("image.py") for a in argv) and any(a.startswith(marker) for a in argv):
                pids.append(int(entry))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    own, deadline = set(_LAUNCHERS.get(names.name, [])), time.monotonic() + 10
    for pid in pids:
        start = _start_time(pid)
        while start is not None and time.monotonic() < deadline:
            if pid in own:
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        break
            if _start_time(pid) != start:
                break
            time.sleep(0.05)
        else:
            if start is not None and _start_time(pid) == start:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _kill_ssh_masters(names: Names) -> None:
    marker = str(names.state_dir / "cp") + "/"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        cmdline = _read(f"/proc/{entry}/cmdline").replace("\0", " ")
        if marker in cmdline and _read(f"/proc/{entry}/comm") == "ssh":
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGTERM)


def _lab_netns(names: Names) -> list[str]:
    prefix = names.netns("")
    return [n for n in os.listdir("/run/netns") if n.startswith(prefix) and HOST_RE.match(n[len(prefix):])] \
        if os.path.isdir("/run/netns") else []


def _lab_links(names: Names) -> list[str]:
    result = _ip("-j", "link", "show", check=False)
    links = [link["ifname"] for link in json.loads(result.stdout or "[]")]
    veth_prefix = names.veth(0)[:-1]
    return [n for n in links if n == names.bridge or (n.startswith(veth_prefix) and n[len(veth_prefix):].isdigit())]


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path) + "/"
    points = []
    for line in _read("/proc/self/mounts").splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point == str(path) or point.startswith(prefix):
            points.append(point)
    return points


def leftovers(name: str | None = None) -> list[str]:
    """Everything of lab `name` that still exists on the machine (empty after down)."""
    names = Names(lab_name(name))
    found = [f"netns {n}" for n in _lab_netns(names)] + [f"link {n}" for n in _lab_links(names)]
    found += [f"cgroup {p}" for p in _find_lab_cgroups(names)]
    found += [f"mount {m}" for m in _mounts_under(names.state_dir)]
    if names.state_dir.exists():
        found.append(f"dir {names.state_dir}")
    marker = str(names.state_dir) + "/"
    netns_re = re.compile(re.escape(names.netns("")) + r"node[0-9]+(\s|$)")
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            cmdline = _read(f"/proc/{entry}/cmdline").replace("\0", " ")
            if marker in cmdline or netns_re.search(cmdline):
                found.append(f"process {entry}: {cmdline[:120]}")
    return found


# --------------------------------------------------------------------------- up


BOOT_SCRIPT = r"""
set -eu
S="$1"
OLD=
if [ -f "$S/image" ]; then
  # Its own root filesystem: an overlay of the image (upper/work in the state dir), made / by pivot_root;
  # the machine's root stays reachable under /mnt until systemd starts, then it is detached.
  mount -t overlay overlay -o "lowerdir=$(cat "$S/image"),upperdir=$S/upper,workdir=$S/work" "$S/rootfs"
  cd "$S/rootfs"
  pivot_root . mnt
  cd /
  OLD=/mnt
  S="/mnt$S"
else
  for d in etc var opt root srv home; do
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$S/upper/$d,workdir=$S/work/$d" "/$d"
  done
  mount --bind "$S/policy-rc.d" /usr/sbin/policy-rc.d
fi
cgroup_mounts=$(cat "$S/cgroup-mounts")
# /proc first: coreutils' `mknod -m` sets the mode through /proc/self/fd.
mount -t proc -o nosuid,nodev,noexec proc /proc
for p in /proc/sys /proc/sysrq-trigger; do
  if [ -e "$p" ]; then mount --bind "$p" "$p"; mount -o remount,bind,ro "$p"; fi
done
mount -t tmpfs -o mode=755,nosuid,size=1m tmpfs /dev
mknod -m 666 /dev/null c 1 3; mknod -m 666 /dev/zero c 1 5; mknod -m 666 /dev/full c 1 7
mknod -m 666 /dev/random c 1 8; mknod -m 666 /dev/urandom c 1 9; mknod -m 666 /dev/tty c 5 0
mkdir /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t mqueue mqueue /dev/mqueue
ln -s /proc/self/fd /dev/fd; ln -s fd/0 /dev/stdin; ln -s fd/1 /dev/stdout; ln -s fd/2 /dev/stderr
touch /dev/console
mount --bind "$S/console" /dev/console
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
mount -t tmpfs -o mode=755,nosuid,nodev,noexec tmpfs /sys/fs/cgroup
echo "$cgroup_mounts" | while read -r dir opts; do
  mkdir -p "/sys/fs/cgroup/$dir"
  mount $opts "/sys/fs/cgroup/$dir"
done
mount -o remount,ro,nosuid,nodev,noexec,mode=755 /sys/fs/cgroup
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
hostname "$2"
if [ -n "$OLD" ]; then umount -l "$OLD"; fi
exec env -i container=opsguard-lab "PATH=$3" /lib/systemd/systemd --system
"""


def _upper_dir(upper: Path, lower_root: Path, rel: str) -> Path:
    """Create upper/<rel> and its parents with the mode and owner of the same directories in the lower layer."""
    path = upper
    for part in Path(rel).parts:
        path = path / part
        if not path.is_dir():
            path.mkdir()
            with contextlib.suppress(FileNotFoundError):
                lower = os.stat(lower_root / path.relative_to(upper))
                os.chmod(path, lower.st_mode & 0o7777)
                os.chown(path, lower.st_uid, lower.st_gid)
    return path


def _prepare_host_dir(names: Names, host: str, all_hosts: list[tuple[str, str]], public_key: str,
                      cgroup_lines: list[str], units: dict[str, str], image_root: Path | None = None) -> Path:
    hostdir = names.state_dir / host
    if image_root is None:
        lower_root = Path("/")
        for d in OVERLAID:
            for layer in ("upper", "work"):
                path = hostdir / layer / d
                path.mkdir(parents=True)
            lower = os.stat(f"/{d}")
            os.chmod(hostdir / "upper" / d, lower.st_mode & 0o7777)
            os.chown(hostdir / "upper" / d, lower.st_uid, lower.st_gid)
    else:
        lower_root = image_root
        for layer in ("upper", "work", "rootfs"):
            (hostdir / layer).mkdir(parents=True, mode=0o755)
        os.chmod(hostdir / "upper", os.stat(image_root).st_mode & 0o7777)
        for d in ("etc", "root", "var"):
            _upper_dir(hostdir / "upper", image_root, d)
        (hostdir / "image").write_text(str(image_root), encoding="utf-8")
    etc = hostdir / "upper" / "etc"
    (etc / "hostname").write_text(f"{host}\n", encoding="ascii")
    (etc / "machine-id").write_text(hashlib.md5(f"{names.name}/{host}/{time.time_ns()}".encode()).hexdigest() + "\n",  # noqa: S324
                                    encoding="ascii")
    (etc / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                               + "".join(f"{addr}\t{name}\n" for name, addr in all_hosts)
                               + f"{names.gateway}\tcontrol {host_image.MIRROR_HOST}\n", encoding="ascii")
    (etc / "resolv.conf").write_text("# test host: DNS-free, every fleet host is in /etc/hosts\n", encoding="ascii")
    # MariaDB's files are copied into the upper layer here, so the copy-up of ~120 MB is not charged
    # as page cache to the host's memory cgroup when mariadbd first writes them.
    if (lower_root / "var/lib/mysql").is_dir():
        lib = _upper_dir(hostdir / "upper", lower_root, "var/lib")
        _run(["cp", "-a", str(lower_root / "var/lib/mysql"), str(lib)], timeout=120)
    unit_dir = etc / "systemd" / "system"
    unit_dir.mkdir(parents=True)
    for unit in MASKED_UNITS:
        (unit_dir / unit).symlink_to("/dev/null")
    wants = unit_dir / "multi-user.target.wants"
    wants.mkdir()
    for unit, text in units.items():
        if "/" in unit or not unit.endswith((".service", ".timer", ".socket", ".path")):
            raise LabError(f"extra unit name {unit!r} is invalid: expected a plain unit file name such as demo.service")
        (unit_dir / unit).write_text(text, encoding="utf-8")
        (wants / unit).symlink_to(f"/etc/systemd/system/{unit}")
    if image_root is None:
        # Measured with the machine's pyenv init in /root/.bashrc: 0.15 s more per SSH command (Ansible task).
        for name, text in ROOT_SHELL_FILES.items():
            (hostdir / "upper" / "root" / name).write_text(text, encoding="ascii")
    ssh_dir = hostdir / "upper" / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "authorized_keys").write_text(public_key, encoding="ascii")
    os.chmod(ssh_dir / "authorized_keys", 0o600)
    (hostdir / "policy-rc.d").write_text("#!/bin/sh\n# test host: services start normally\nexit 0\n", encoding="ascii")
    os.chmod(hostdir / "policy-rc.d", 0o755)
    (hostdir / "console").touch()
    (hostdir / "boot.sh").write_text(BOOT_SCRIPT, encoding="ascii")
    (hostdir / "cgroup-mounts").write_text("".join(f"{line}\n" for line in cgroup_lines), encoding="ascii")
    return hostdir


def _make_cgroups(names: Names, hosts: list[str]) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Create <own cgroup>/opsguard-lab-NAME/HOST in every hierarchy (cpuset values copied down)."""
    mounts, own = _cgroup_mounts(), _own_cgroups()
    lab_dirs, per_host = [], {h: {} for h in hosts}
    for key, path in own.items():
        if key not in mounts:
            raise LabError(f"cgroup hierarchy {key or 'cgroup2'} of this process is not mounted: mount it under /sys/fs/cgroup")
        mount_point, mount_root = mounts[key]
        rel = os.path.relpath(path, mount_root) if mount_root != "/" else path.lstrip("/")
        parent = Path(mount_point) / rel if rel not in ("", ".") else Path(mount_point)
        lab = parent / names.cgroup_dir
        lab.mkdir(exist_ok=True)
        lab_dirs.append(str(lab))
        for host in hosts:
            (lab / host).mkdir()
            per_host[host][key] = str(lab / host)
        if "cpuset" in key.split(","):
            for target in [lab, *(lab / h for h in hosts)]:
                for item in ("cpuset.cpus", "cpuset.mems"):
                    _write(target / item, _read(target.parent / item))
    return lab_dirs, per_host


def _host_pid(launcher: subprocess.Popen, host: str, deadline: float) -> int:
    """The PID (machine view) of the host's PID 1: the child that unshare forked."""
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise LabError(f"host {host}: the launcher exited with status {launcher.returncode} before systemd started")
        children = _read(f"/proc/{launcher.pid}/task/{launcher.pid}/children").split()
        for child in children:
            nspid = [line for line in _read(f"/proc/{child}/status").splitlines() if line.startswith("NSpid:")]
            if nspid and nspid[0].split()[-1] == "1":
                return int(child)
        time.sleep(0.02)
    raise LabError(f"host {host}: no PID 1 appeared under launcher {launcher.pid} within the boot timeout")


def up(hosts: int, memory: str | int | None = None, name: str | None = None, timeout: float = BOOT_TIMEOUT,
       units: dict[str, str] | None = None, image: str = "machine") -> Fleet:
    """Bring up a fleet of `hosts` hosts (cleaning leftovers of an earlier run of the same name first).

    `units` maps extra systemd unit file names to their text; they are installed in every host's
    /etc/systemd/system and enabled in multi-user.target before systemd starts.
    `image` is the hosts' root filesystem: `machine`, `fresh` or `provisioned` (see the module doc);
    the images and the local apt repository are built on first use (tests/lab/image.py).
    """
    names = Names(lab_name(name))
    if not 1 <= hosts <= MAX_HOSTS:
        raise LabError(f"lab {names.name!r}: --hosts {hosts} is out of range: use 1..{MAX_HOSTS}")
    if image not in IMAGES:
        raise LabError(f"lab {names.name!r}: image {image!r} is unknown: use one of {', '.join(IMAGES)}")
    limit = parse_size(memory)
    preflight(image)
    built: dict[str, Path] | None = None
    if image != "machine":
        try:
            built = host_image.build()
        except host_image.ImageError as exc:
            raise LabError(f"lab {names.name!r}: the {image} image is not available: {exc}") from None
    with _lock(names):
        _teardown(names)
        _check_subnet_free(names)
        try:
            fleet = _bring_up(names, hosts, limit, timeout, units or {}, image, built)
        except BaseException:
            with contextlib.suppress(Exception):
                _teardown(names)
            raise
    return fleet


def _check_subnet_free(names: Names) -> None:
    result = _ip("-j", "-4", "route", "show", check=False)
    for route in json.loads(result.stdout or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default" and ipaddress.IPv4Network(dst, strict=False).overlaps(names.subnet):
            raise LabError(f"lab {names.name!r}: its subnet {names.subnet} overlaps the route {dst} on {route.get('dev')}; "
                           "choose another lab name (--name / OPSGUARD_LAB_NAME)")


def _start_mirror(names: Names, directory: Path, deadline: float) -> dict[str, Any]:
    """Serve the local apt repository on the bridge address; return its process identity for the state file."""
    log = names.state_dir / "mirror.log"
    argv = [sys.executable, str(Path(host_image.__file__).resolve()), "serve", str(directory), names.gateway,
            str(host_image.MIRROR_PORT), str(log)]
    with open(log, "ab") as out:
        server = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)  # pylint: disable=consider-using-with
    _LAUNCHERS.setdefault(names.name, []).append(server.pid)
    record = {"pid": server.pid, "start_time": _start_time(server.pid), "address": names.gateway,
              "port": host_image.MIRROR_PORT, "directory": str(directory)}
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise LabError(f"lab {names.name!r}: the apt mirror server exited {server.returncode}: {_read(log)[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection((names.gateway, host_image.MIRROR_PORT), timeout=2):
            return record
        time.sleep(0.05)
    raise LabError(f"lab {names.name!r}: the apt mirror server did not listen on {names.gateway}:{host_image.MIRROR_PORT} "
                   f"within the boot timeout: {_read(log)[-2000:]}")


def _bring_up(names: Names, count: int, limit: int | None, timeout: float, units: dict[str, str],
              image: str = "machine", built: dict[str, Path] | None = None) -> Fleet:
    started = time.monotonic()
    host_names = [f"node{i}" for i in range(1, count + 1)]
    names.state_dir.mkdir(parents=True)
    os.chmod(names.state_dir, 0o700)
    (names.state_dir / "cp").mkdir(mode=0o700)
    key = names.state_dir / "id_ed25519"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"opsguard-lab-{names.name}", "-f", str(key)], timeout=30)
    public_key = key.with_suffix(".pub").read_text(encoding="ascii")
    all_hosts = [(h, names.address(i)) for i, h in enumerate(host_names, 1)]
    cgroup_lines = [f"{_mount_dir_name(k)} {' '.join(_mount_options(k))}" for k in _own_cgroups()]
    lab_dirs, host_cgroups = _make_cgroups(names, host_names)
    image_root = built[image] if built is not None and image != "machine" else None
    state: dict[str, Any] = {"name": names.name, "state_dir": str(names.state_dir), "memory": limit,
                             "image": image, "image_root": str(image_root) if image_root else None,
                             "lab_cgroups": lab_dirs, "hosts": [], "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _save(names, state)
    _ip("link", "add", names.bridge, "type", "bridge")
    _ip("addr", "add", f"{names.gateway}/{names.subnet.prefixlen}", "dev", names.bridge)
    _ip("link", "set", names.bridge, "up")
    if built is not None and image_root is not None:
        state["mirror"] = _start_mirror(names, built["apt"], started + timeout)
        _save(names, state)
    launchers = []
    for index, host in enumerate(host_names, 1):
        hostdir = _prepare_host_dir(names, host, all_hosts, public_key, cgroup_lines, units, image_root)
        netns, veth = names.netns(host), names.veth(index)
        _ip("netns", "add", netns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("link", "set", veth, "master", names.bridge, "up")
        _ip("-n", netns, "addr", "add", f"{names.address(index)}/{names.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "route", "add", "default", "via", names.gateway)
        if limit is not None:
            _set_memory_limit(Path(host_cgroups[host]["memory"]), limit)
        procs = [str(Path(p) / "cgroup.procs") for p in host_cgroups[host].values()]
        mover = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; exec "$@"'
        argv = ["sh", "-c", mover, "sh", str(len(procs)), *procs,
                "nsenter", f"--net=/run/netns/{netns}", "--",
                "unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "--cgroup", "--propagation", "private", "--",
                "/bin/sh", str(hostdir / "boot.sh"), str(hostdir), host, HOST_PATH]
        with open(hostdir / "boot.log", "ab") as log:
            launcher = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                        env={"PATH": HOST_PATH, "LANG": "C.UTF-8"})
        _LAUNCHERS.setdefault(names.name, []).append(launcher.pid)
        launchers.append((index, host, veth, netns, launcher, hostdir, host_cgroups[host]))
    deadline = started + timeout
    for index, host, veth, netns, launcher, hostdir, cgroups in launchers:
        pid = _host_pid(launcher, host, deadline)
        state["hosts"].append({"name": host, "index": index, "address": names.address(index), "pid": pid,
                               "start_time": _start_time(pid), "launcher_pid": launcher.pid, "netns": netns, "veth": veth,
                               "cgroups": cgroups, "state_dir": str(hostdir)})
    _save(names, state)
    fleet = Fleet(state)
    fleet.write_inventory()
    _wait_ready(fleet, deadline, timeout)
    return fleet


def _inotify_hint() -> str:
    """A hint when root's inotify instances are (nearly) used up: every host's systemd and logind need some, and the
    limit (fs.inotify.max_user_instances) counts them machine-wide, for all fleets together."""
    limit = int(_read("/proc/sys/fs/inotify/max_user_instances", "0") or 0)
    used = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{entry}").st_uid != 0:
                continue
            for fd in os.listdir(f"/proc/{entry}/fd"):
                with contextlib.suppress(OSError):
                    used += os.readlink(f"/proc/{entry}/fd/{fd}") == "anon_inode:inotify"
    if limit and used >= limit - 16:
        return (f"\n\nroot holds {used} inotify instances of fs.inotify.max_user_instances={limit} (shared by every fleet on "
                "this machine; each host's systemd and logind need about 7): bring fewer hosts up at once, or raise the "
                "limit, e.g. `sysctl -w fs.inotify.max_user_instances=1024`")
    return ""


def _wait_ready(fleet: Fleet, deadline: float, timeout: float) -> None:
    """Wait (bounded) until every host's systemd is `running` and its sshd answers; else fail with diagnostics."""
    errors: dict[str, str] = {}

    def wait_one(host: Host) -> None:
        state = ""
        while time.monotonic() < deadline:
            if not host.alive():
                errors[host.name] = "PID 1 exited during boot"
                return
            try:
                remaining = max(1.0, deadline - time.monotonic())
                state = fleet.exec(host, ["systemctl", "is-system-running", "--wait"], check=False, timeout=remaining).stdout.strip()
            except (subprocess.TimeoutExpired, LabError):
                state = "no answer"
                continue
            if state in ("running", "degraded", "maintenance", "stopping"):
                break
            time.sleep(0.2)
        if state != "running":
            errors[host.name] = f"systemd state is {state!r}, expected 'running'"
            return
        while time.monotonic() < deadline:
            try:
                if fleet.ssh(host, "true", check=False, timeout=max(1.0, min(10.0, deadline - time.monotonic()))).returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.2)
        errors[host.name] = f"sshd on {host.address}:22 did not accept the lab key"

    threads = [threading.Thread(target=wait_one, args=(h,), daemon=True) for h in fleet.hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 30)
    for host in fleet.hosts:
        if host.name not in errors and any(t.is_alive() for t in threads):
            errors.setdefault(host.name, "readiness check still running at the deadline")
    if errors:
        details = "\n\n".join(f"{name}: {msg}\n{fleet.diagnostics(name)}" for name, msg in sorted(errors.items()))
        details += _inotify_hint()
        raise LabError(f"lab {fleet.name!r}: hosts did not come up (boot timeout {timeout:.0f} s, env OPSGUARD_LAB_BOOT_TIMEOUT); "
                       f"the fleet was removed again:\n{details}")


# --------------------------------------------------------------------------- CLI


def _human(value: int | None) -> str:
    if value is None:
        return "unlimited"
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024  # type: ignore[assignment]
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Test fleet of real hosts (namespaces + systemd) on this machine.")
    parser.add_argument("--name", help=f"lab name (env OPSGUARD_LAB_NAME, default {DEFAULT_NAME})")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="bring a fleet up (replacing any earlier one of the same name)")
    p_up.add_argument("--hosts", type=int, default=2)
    p_up.add_argument("--memory", help="memory limit per host, e.g. 512M")
    p_up.add_argument("--image", choices=IMAGES, default="machine",
                      help="root filesystem of the hosts: the machine's (overlays, default), fresh Debian 12, or provisioned")
    sub.add_parser("status", help="hosts, addresses, state, memory limit/usage")
    p_inv = sub.add_parser("inventory", help="write the Ansible inventory (to PATH, default: print it)")
    p_inv.add_argument("path", nargs="?")
    sub.add_parser("down", help="remove the fleet and everything it created")
    for fault in ("cut", "heal", "freeze", "thaw", "kill"):
        sub.add_parser(fault, help=f"fault injection: {fault} a host").add_argument("host")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            fleet = up(args.hosts, args.memory, name=args.name, image=args.image)
            print(f"lab {fleet.name}: {len(fleet.hosts)} {fleet.image} hosts up; inventory {fleet.inventory_path}; key {fleet.ssh_key}")
            return 0
        if args.command == "down":
            down(args.name)
            return 0
        fleet = current(args.name)
        if fleet is None:
            print(f"lab {lab_name(args.name)!r} is not up (no {_state_file(Names(lab_name(args.name)))})", file=sys.stderr)
            return 1
        if args.command == "status":
            print(f"lab {fleet.name}  subnet {fleet.names.subnet}  bridge {fleet.names.bridge}  state {fleet.state_dir}  image {fleet.image}")
            print(f"{'HOST':8} {'ADDRESS':15} {'PID':>8} {'STATE':12} {'NET':4} {'LIMIT':>10} {'USAGE':>10}")
            for row in fleet.status():
                print(f"{row['host']:8} {row['address']:15} {row['pid'] or '-':>8} {row['state']:12} {row['network']:4} "
                      f"{_human(row['memory_limit']):>10} {_human(row['memory_usage']):>10}")
            return 0
        if args.command == "inventory":
            if args.path:
                print(fleet.write_inventory(args.path))
            else:
                sys.stdout.write(Path(fleet.write_inventory()).read_text(encoding="utf-8"))
            return 0
        getattr(fleet, args.command)(args.host)
        return 0
    except LabError as exc:
        print(f"fleet.py: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
