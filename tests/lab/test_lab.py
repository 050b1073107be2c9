"""Tests of the test fleet itself: real namespaces, systemd, sshd, MariaDB, nginx; runs as root.

Run: cd /work/main && .venv/bin/python -m pytest tests/lab -q
The tests use their own lab names (OPSGUARD_LAB_TEST_NAME, default ``oglabtest``, and
``<that>-c`` for the crash test), so they do not disturb a fleet under the default name.
Tests in this module run in file order on one 2-host fleet; the last ones kill a host and tear it down.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

import fleet
from ansible_collections.opsguard.anqicms.tests.utils.lab import running_fleet  # fleet put .collections on sys.path
from ansible_collections.opsguard.anqicms.tests.utils.wait import poll

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the test fleet needs root")

FLEET_PY = str(Path(fleet.__file__).resolve())
NAME = os.environ.get("OPSGUARD_LAB_TEST_NAME", "oglabtest")
CRASH_NAME = f"{NAME[:17]}-c"
MEMORY = 512 * 1024 * 1024


def _wait(predicate, timeout: float, interval: float = 0.2) -> bool:
    return bool(poll(predicate, timeout, interval))


def _ssh_ok(lab: fleet.Fleet, host: str, timeout: float = 12) -> bool:
    try:
        return lab.ssh(host, "true", check=False, timeout=timeout).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _system_traces(name: str) -> list[str]:
    """Inspect the machine directly (not through fleet.py's own bookkeeping) for anything of lab `name`."""
    names = fleet.Names(name)
    traces = []
    links = json.loads(subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True, timeout=15).stdout)
    traces += [f"link {link['ifname']}" for link in links
               if link["ifname"] == names.bridge or link["ifname"].startswith(names.veth(0)[:-1])]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True, timeout=15).stdout.split()
    traces += [f"netns {n}" for n in netns if re.fullmatch(f"oglab-{re.escape(name)}-node[0-9]+", n)]
    for line in Path("/proc/mounts").read_text(encoding="utf-8").splitlines():
        if f"{names.state_dir}/" in line or f" {names.state_dir} " in line or re.search(f"/run/netns/oglab-{re.escape(name)}-node[0-9]+ ", line):
            traces.append(f"mount {line}")
    for root in Path("/sys/fs/cgroup").iterdir():
        found = subprocess.run(["find", str(root), "-maxdepth", "5", "-type", "d", "-name", names.cgroup_dir],
                               capture_output=True, text=True, check=False, timeout=30).stdout.split()
        traces += [f"cgroup {p}" for p in found]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroups = (proc / "cgroup").read_text(encoding="utf-8")
        except OSError:
            continue
        if f"{names.state_dir}/" in cmdline or f"/{names.cgroup_dir}/" in cgroups:
            traces.append(f"process {proc.name}: {cmdline[:100]}")
    if names.state_dir.exists():
        traces.append(f"dir {names.state_dir}")
    return traces


@pytest.fixture(scope="module")
def lab() -> Iterator[fleet.Fleet]:
    with running_fleet(2, "512M", NAME, lab=fleet) as running:
        yield running


# ------------------------------------------------------------------ input checks (no fleet needed)


def test_without_root_the_tool_names_the_fix() -> None:
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", FLEET_PY,
                             "--name", "ogunpriv", "up", "--hosts", "1"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result
    assert "not running as root" in result.stderr and "run fleet.py" in result.stderr


@pytest.mark.parametrize("bad", ["Bad_Name", "1abc", "x" * 21, "a b"])
def test_bad_lab_name_is_refused(bad: str) -> None:
    with pytest.raises(fleet.LabError, match="lab name .* is invalid"):
        fleet.lab_name(bad)


def test_lab_names_derive_distinct_objects() -> None:
    a, b = fleet.Names("oglab"), fleet.Names("oglab-f1")
    assert len(a.bridge) <= 15 and len(a.veth(100)) <= 15
    assert a.bridge != b.bridge and a.subnet != b.subnet and a.state_dir != b.state_dir and a.cgroup_dir != b.cgroup_dir
    assert fleet.parse_size("512M") == 512 * 2 ** 20 and fleet.parse_size("1G") == 2 ** 30 and fleet.parse_size(None) is None
    with pytest.raises(fleet.LabError, match="too small"):
        fleet.parse_size("1M")


def test_derived_names_stay_valid_and_distinct() -> None:
    assert fleet.derived_name("roles", "oglab") == "oglab-roles"
    cut = fleet.derived_name("failover", "a" * 20)
    assert cut == "a" * 11 + "-failover" and fleet.lab_name(cut) == cut
    assert fleet.derived_name("pb", "abcdefghijklmnopq-rs") == "abcdefghijklmnopq-pb"
    assert fleet.derived_name("w0", "st1") != fleet.derived_name("w1", "st1") != fleet.lab_name("st1")
    for bad in ("Roles", "", "x" * 9, "a-b"):
        with pytest.raises(fleet.LabError, match="suffix .* is invalid"):
            fleet.derived_name(bad, "oglab")


def test_xdist_workers_get_lab_names_of_their_own() -> None:
    import pytest_plugin  # pylint: disable=import-outside-toplevel

    env = {"PYTEST_XDIST_WORKER": "gw1", "OPSGUARD_LAB_NAME": "st1"}
    pytest_plugin.worker_lab_names(env)
    pytest_plugin.worker_lab_names(env)  # applied once per process, not once per call
    assert env["OPSGUARD_LAB_NAME"] == "st1-w1" and env["OPSGUARD_LAB_TEST_NAME"] == "oglabtest-w1"
    other = {"PYTEST_XDIST_WORKER": "gw0", "OPSGUARD_LAB_NAME": "st1"}
    pytest_plugin.worker_lab_names(other)
    assert other["OPSGUARD_LAB_NAME"] == "st1-w0"
    alone = {"OPSGUARD_LAB_NAME": "st1"}
    pytest_plugin.worker_lab_names(alone)
    assert alone == {"OPSGUARD_LAB_NAME": "st1"}, "outside xdist the names must not change"


def test_a_host_that_does_not_come_up_fails_with_diagnostics_and_is_removed() -> None:
    name = f"{NAME[:17]}-t"
    broken = "[Unit]\nDescription=always fails\n[Service]\nType=oneshot\nExecStart=/bin/false\n[Install]\nWantedBy=multi-user.target\n"
    with pytest.raises(fleet.LabError) as failure:
        fleet.up(1, name=name, timeout=60, units={"oglab-broken.service": broken})
    message = str(failure.value)
    assert "hosts did not come up (boot timeout 60 s" in message
    assert "node1: systemd state is 'degraded', expected 'running'" in message
    assert "$ systemctl --failed" in message and "oglab-broken.service" in message and "$ journalctl" in message
    assert _system_traces(name) == []


def test_a_failed_boot_names_the_inotify_limit_when_it_is_used_up(monkeypatch: pytest.MonkeyPatch) -> None:
    real_read = fleet._read  # pylint: disable=protected-access

    def limit(value: str):
        return lambda path, default="": value if path == "/proc/sys/fs/inotify/max_user_instances" else real_read(path, default)

    monkeypatch.setattr(fleet, "_read", limit("1"))
    hint = fleet._inotify_hint()  # pylint: disable=protected-access
    assert "inotify instances of fs.inotify.max_user_instances=1 " in hint and "sysctl -w fs.inotify.max_user_instances=" in hint
    monkeypatch.setattr(fleet, "_read", limit(str(2 ** 30)))
    assert fleet._inotify_hint() == ""  # pylint: disable=protected-access


def test_factory_fleet_is_separate_and_torn_down(lab_fleet_factory) -> None:
    small = lab_fleet_factory(1, "256M")
    assert small.name != fleet.lab_name() and len(small.hosts) == 1
    assert small.exec("node1", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes").stdout.strip() == str(256 * 2 ** 20)
    assert _ssh_ok(small, "node1")


def test_factory_fleet_was_torn_down() -> None:
    assert _system_traces(f"{fleet.lab_name()[:14]}-f1") == []


# ------------------------------------------------------------------ a 2-host fleet


def test_fleet_comes_up_with_systemd_running(lab: fleet.Fleet) -> None:
    assert [h.name for h in lab.hosts] == ["node1", "node2"]
    assert len({h.address for h in lab.hosts}) == 2
    for host in lab.hosts:
        assert host.alive()
        assert Path(f"/proc/{host.pid}/comm").read_text(encoding="utf-8").strip() == "systemd"
        assert lab.exec(host, "systemctl is-system-running").stdout.strip() == "running"
        assert lab.ssh(host, "hostname").stdout.strip() == host.name
        assert lab.ssh(host, "cat /proc/1/comm").stdout.strip() == "systemd"


def test_ansible_ping_over_ssh_reaches_every_host(lab: fleet.Fleet) -> None:
    result = lab.ansible("fleet", "ansible.builtin.ping")
    assert result.returncode == 0, result.stdout + result.stderr
    for host in lab.hosts:
        assert f"{host.name} | SUCCESS" in result.stdout
    assert lab.run_module("node2", "ansible.builtin.ping", {})["ping"] == "pong"
    failed = lab.run_module("node1", "ansible.builtin.command", {"cmd": "false"})
    assert failed["failed"] is True and failed["rc"] == 1


def test_root_shell_startup_is_the_hosts_own(lab: fleet.Fleet) -> None:
    for host in lab.hosts:
        for name, text in fleet.ROOT_SHELL_FILES.items():
            assert lab.ssh(host, f"cat ~/{name}").stdout == text, name
        login_path = lab.ssh(host, "bash -lc 'echo $PATH'").stdout.strip()
        assert "/root/" not in login_path and "/usr/bin" in login_path.split(":"), login_path


def test_inventory_has_the_groups_and_connection_settings(lab: fleet.Fleet) -> None:
    result = subprocess.run([fleet._tool("ansible-inventory"), "-i", lab.inventory_path, "--list"],  # pylint: disable=protected-access
                            capture_output=True, text=True, check=True, timeout=60, env=lab.ansible_env())
    inventory = json.loads(result.stdout)
    for group in ("fleet", "app", "database", "proxy"):
        assert sorted(inventory[group]["hosts"]) == ["node1", "node2"], group
    for host in lab.hosts:
        hostvars = inventory["_meta"]["hostvars"][host.name]
        assert hostvars["ansible_host"] == host.address and hostvars["ansible_user"] == "root"
        assert hostvars["ansible_python_interpreter"] == "/usr/bin/python3"
        assert hostvars["ansible_ssh_private_key_file"] == lab.ssh_key


def test_hosts_are_dns_free_and_see_each_other(lab: fleet.Fleet) -> None:
    assert lab.exec("node1", "getent hosts node2").stdout.split()[0] == lab.host("node2").address
    lab.exec("node1", "timeout 5 bash -c 'echo > /dev/tcp/node2/22'")
    assert "nameserver" not in lab.exec("node1", "cat /etc/resolv.conf").stdout
    assert lab.ssh("node2", "/usr/bin/python3 -c 'import sys; print(sys.version_info >= (3, 8))'").stdout.strip() == "True"


def test_services_run_separately_per_host(lab: fleet.Fleet) -> None:
    for host in lab.hosts:
        assert lab.exec(host, "systemctl is-active ssh mariadb nginx").stdout.split() == ["active"] * 3
        assert lab.exec(host, ["mariadb", "-N", "-e", "select @@hostname"]).stdout.strip() == host.name
    node2_pid = lab.exec("node2", "systemctl show -P MainPID mariadb").stdout.strip()
    lab.exec("node1", "systemctl stop mariadb")
    try:
        assert lab.exec("node1", "systemctl is-active mariadb", check=False).stdout.strip() == "inactive"
        assert lab.exec("node2", "systemctl is-active mariadb", check=False).stdout.strip() == "active"
        assert lab.exec("node2", "systemctl show -P MainPID mariadb").stdout.strip() == node2_pid
        lab.exec("node2", ["mariadb", "-e", "select 1"])
    finally:
        lab.exec("node1", "systemctl start mariadb")
    assert lab.exec("node1", "systemctl is-active mariadb").stdout.strip() == "active"


def test_service_starts_are_not_blocked_by_policy_rc_d(lab: fleet.Fleet) -> None:
    assert lab.exec("node1", "/usr/sbin/policy-rc.d; echo $?").stdout.strip().endswith("0")
    lab.exec("node1", "invoke-rc.d nginx restart && systemctl is-active nginx")
    assert subprocess.run(["/usr/sbin/policy-rc.d"], check=False, timeout=10).returncode == 101, "the machine's policy-rc.d changed"


def test_memory_limit_is_the_hosts_root_limit(lab: fleet.Fleet) -> None:
    read = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
    for host in lab.hosts:
        assert int(lab.exec(host, read).stdout) == MEMORY
        assert lab.memory_limit(host) == MEMORY
    lab.set_memory_limit("node1", "256M")
    try:
        assert int(lab.ssh("node1", read).stdout) == 256 * 2 ** 20
        if Path(lab.host("node1").cgroup("memory"), "memory.memsw.limit_in_bytes").exists():
            assert int(lab.exec("node1", "cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").stdout) == 256 * 2 ** 20
        assert int(lab.exec("node2", read).stdout) == MEMORY
        lab.set_memory_limit("node1", None)
        assert int(lab.exec("node1", read).stdout) > 2 ** 60
    finally:
        lab.set_memory_limit("node1", MEMORY)
    assert int(lab.exec("node1", read).stdout) == MEMORY
    assert 0 < lab.memory_usage("node1") < MEMORY


def test_put_copies_a_file_into_one_host(lab: fleet.Fleet, tmp_path: Path) -> None:
    source = tmp_path / "payload"
    source.write_bytes(b"\x00binary\xffdata\n")
    lab.put("node1", source, "/opt/lab-test/payload", mode=0o600)
    mode, digest = lab.ssh("node1", "stat -c %a /opt/lab-test/payload; sha256sum /opt/lab-test/payload").stdout.split()[:2]
    assert (mode, digest) == ("600", hashlib.sha256(source.read_bytes()).hexdigest())
    assert lab.exec("node2", "test -e /opt/lab-test/payload", check=False).returncode == 1
    assert not Path("/opt/lab-test").exists(), "the file leaked into the machine's /opt"


def test_cut_and_heal(lab: fleet.Fleet) -> None:
    assert _ssh_ok(lab, "node2")
    lab.cut("node2")
    try:
        assert not _ssh_ok(lab, "node2")
        assert lab.exec("node1", "timeout 3 bash -c 'echo > /dev/tcp/node2/22'", check=False).returncode != 0
        assert lab.status()[1]["network"] == "cut"
    finally:
        lab.heal("node2")
    assert _wait(lambda: _ssh_ok(lab, "node2"), timeout=20)


def test_freeze_and_thaw(lab: fleet.Fleet) -> None:
    lab.freeze("node2")
    try:
        assert lab.frozen("node2") and lab.system_state("node2") == "frozen"
        assert not _ssh_ok(lab, "node2", timeout=8)
        with pytest.raises(subprocess.TimeoutExpired):
            lab.exec("node2", "true", timeout=2)  # bounded: a frozen host never hangs the tool
        assert _ssh_ok(lab, "node1")
    finally:
        lab.thaw("node2")
    assert _wait(lambda: _ssh_ok(lab, "node2"), timeout=20)
    assert lab.system_state("node2") == "running"


def test_cli_status_and_inventory(lab: fleet.Fleet, tmp_path: Path) -> None:
    status = subprocess.run([sys.executable, FLEET_PY, "--name", NAME, "status"], capture_output=True, text=True, timeout=60, check=True)
    rows = [line.split() for line in status.stdout.splitlines()[2:]]
    assert [(r[0], r[1], r[3], r[4], r[5]) for r in rows] == [(h.name, h.address, "running", "up", "512.0M") for h in lab.hosts]
    for command, expected in (("cut", False), ("heal", True)):
        subprocess.run([sys.executable, FLEET_PY, "--name", NAME, command, "node2"], capture_output=True, timeout=60, check=True)
        assert lab.link_up("node2") is expected
    failed = subprocess.run([sys.executable, FLEET_PY, "--name", NAME, "freeze", "node9"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert failed.returncode == 2 and "has no host 'node9'" in failed.stderr and "node1, node2" in failed.stderr
    target = tmp_path / "inv.yml"
    subprocess.run([sys.executable, FLEET_PY, "--name", NAME, "inventory", str(target)], capture_output=True, timeout=60, check=True)
    assert target.read_text(encoding="utf-8") == Path(lab.inventory_path).read_text(encoding="utf-8")


def test_up_recovers_after_a_crash_without_touching_other_labs(lab: fleet.Fleet) -> None:
    names = fleet.Names(CRASH_NAME)
    cli = subprocess.Popen([sys.executable, FLEET_PY, "--name", CRASH_NAME, "up", "--hosts", "2"],  # pylint: disable=consider-using-with
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def launchers() -> list[int]:
        found = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if "unshare" in cmdline and f"{names.state_dir}/" in cmdline:
                    found.append(int(proc.name))
        return found

    def booted() -> list[int]:
        children = []
        for pid in launchers():
            with contextlib.suppress(OSError):
                children += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="utf-8").split()]
        return children

    try:
        assert _wait(lambda: len(booted()) == 2, timeout=60), "the crash lab's hosts never started"
        hosts_pids = {pid: fleet._start_time(pid) for pid in booted()}  # pylint: disable=protected-access
    finally:
        os.killpg(cli.pid, signal.SIGKILL)
        cli.wait(timeout=10)
    for pid in launchers():
        os.kill(pid, signal.SIGKILL)
    subprocess.run(["ip", "netns", "add", names.netns("node7")], check=True, timeout=15)

    def old_hosts_alive() -> list[int]:
        return [pid for pid, start in hosts_pids.items() if fleet._start_time(pid) == start]  # pylint: disable=protected-access

    assert len(old_hosts_alive()) == 2, "hosts should survive the tool's crash"
    assert any(t.startswith("netns") for t in _system_traces(CRASH_NAME))

    recovered = fleet.up(1, name=CRASH_NAME)
    try:
        assert _wait(lambda: not old_hosts_alive(), timeout=10), "old hosts still run"
        assert _ssh_ok(recovered, "node1")
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True, timeout=15).stdout
        assert names.netns("node7") not in netns and names.netns("node2") not in netns
    finally:
        fleet.down(CRASH_NAME)
    assert _system_traces(CRASH_NAME) == []
    # The other lab was never touched.
    assert all(h.alive() for h in lab.hosts) and _ssh_ok(lab, "node1")


def test_kill_ends_the_host(lab: fleet.Fleet) -> None:
    victim = lab.host("node2")
    pids_cgroup = victim.cgroup("pids")
    assert fleet._processes_in(pids_cgroup)  # pylint: disable=protected-access
    lab.kill("node2")
    assert not victim.alive()
    assert _wait(lambda: not fleet._processes_in(pids_cgroup), timeout=10)  # pylint: disable=protected-access
    assert lab.system_state("node2") == "dead"
    assert not _ssh_ok(lab, "node2")
    with pytest.raises(fleet.LabError, match="node2 .* not running"):
        lab.exec("node2", "true")
    assert lab.exec("node1", "systemctl is-system-running").stdout.strip() == "running"


def test_down_leaves_nothing_behind(lab: fleet.Fleet) -> None:
    before = _system_traces(NAME)
    for kind in ("link", "netns", "cgroup", "process", "dir"):
        assert any(t.startswith(kind) for t in before), f"expected a {kind} of the running lab before down: {before}"
    lab.freeze("node1")  # down must also cope with a frozen host
    fleet.down(NAME)
    assert _system_traces(NAME) == []
    assert fleet.leftovers(NAME) == []
    assert not any(Path(f"/proc/{h.pid}").exists() and fleet._start_time(h.pid) == h.start_time  # pylint: disable=protected-access
                   for h in lab.hosts)
    fleet.down(NAME)  # idempotent
    assert fleet.current(NAME) is None


# ------------------------------------------------------------------ hosts with their own root filesystem

IMAGE_NAME = fleet.derived_name("img", NAME)


@pytest.fixture(scope="module")
def fresh_lab() -> Iterator[fleet.Fleet]:
    with running_fleet(1, "512M", IMAGE_NAME, lab=fleet, image="fresh") as running:
        yield running


def test_unknown_image_is_refused_before_anything_is_built() -> None:
    with pytest.raises(fleet.LabError, match="image 'bullseye' is unknown: use one of machine, fresh, provisioned"):
        fleet.up(1, name=IMAGE_NAME, image="bullseye")
    assert _system_traces(IMAGE_NAME) == []


def test_images_are_built_once_and_then_come_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    built = fleet.host_image.build()
    manifest = fleet.host_image.manifest()
    assert manifest["key"] == fleet.host_image.key() and built["fresh"].parent.name == manifest["key"]
    assert set(manifest["recipe"]["roles"]) >= {"mariadb-server", "nginx", "unzip"}

    def no_build(*args, **kwargs):
        raise AssertionError("the cached images were built again")

    monkeypatch.setattr(fleet.host_image, "_build_into", no_build)
    assert fleet.host_image.build() == built
    assert fleet.host_image.manifest()["built"] == manifest["built"]
    packages = (built["apt"] / "Packages").read_text(encoding="utf-8")
    for package in manifest["recipe"]["roles"] + ["python3-apt", "systemd"]:
        assert f"\nPackage: {package}\n" in f"\n{packages}", f"{package} is not in the local repository"
    for package in manifest["recipe"]["mirror_only"]:  # in the repository, not installed in the provisioned image
        assert f"\nPackage: {package}\n" in f"\n{packages}", f"{package} is not in the local repository"
        assert not (built["provisioned"] / f"var/lib/dpkg/info/{package}.list").exists(), package
    for kind in ("fresh", "provisioned"):
        sources = (built[kind] / "etc/apt/sources.list").read_text(encoding="utf-8")
        assert [line for line in sources.splitlines() if line.startswith("deb")] == \
            [f"deb [trusted=yes] http://apt-mirror:{fleet.host_image.MIRROR_PORT}/ ./"], kind
        assert not any((built[kind] / "etc/apt/sources.list.d").iterdir()), kind
    assert (built["provisioned"] / "usr/sbin/mariadbd").exists() and (built["provisioned"] / "usr/sbin/nginx").exists()
    assert (built["provisioned"] / "etc/systemd/system/multi-user.target.wants/mariadb.service").exists()


def test_a_changed_role_package_list_changes_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = fleet.host_image.key()
    monkeypatch.setattr(fleet.host_image, "role_packages", lambda: ["nginx", "jq"])
    assert fleet.host_image.key() != before


def test_fresh_host_has_its_own_root_filesystem(fresh_lab: fleet.Fleet) -> None:
    assert fresh_lab.image == "fresh" and fleet.current(IMAGE_NAME).image == "fresh"
    assert fresh_lab.exec("node1", "systemctl is-system-running").stdout.strip() == "running"
    assert fresh_lab.ssh("node1", "cat /proc/1/comm").stdout.strip() == "systemd"
    assert fresh_lab.exec("node1", "systemctl is-active ssh").stdout.strip() == "active"
    found = fresh_lab.exec("node1", "ls /usr/sbin/mariadbd /usr/sbin/nginx /usr/bin/unzip 2>&1; "
                                    "dpkg-query -W -f='${Status}\\n' mariadb-server nginx python3-apt 2>&1", check=False).stdout
    assert "No such file" in found and "/usr/sbin/nginx" in found and "install ok installed" not in found, found
    marker = Path("/usr/local/share") / f"opsguard-lab-{IMAGE_NAME}-marker"
    marker.write_text("machine only\n", encoding="ascii")
    try:
        assert fresh_lab.exec("node1", f"test -e {marker}", check=False).returncode == 1, "the host sees the machine's /usr"
    finally:
        marker.unlink()
    fresh_lab.exec("node1", "touch /usr/local/share/host-only")
    assert not Path("/usr/local/share/host-only").exists(), "a file written in the host leaked into the machine's /usr"


def test_fresh_host_installs_a_role_package_from_the_local_mirror_only(fresh_lab: fleet.Fleet) -> None:
    fresh_lab.exec("node1", "ip route del default")
    try:
        assert "default" not in fresh_lab.exec("node1", "ip route").stdout
        install = fresh_lab.exec("node1", "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q unzip",
                                 timeout=300)
        assert f"http://apt-mirror:{fleet.host_image.MIRROR_PORT}" in install.stdout, install.stdout[-2000:]
        assert "deb.debian.org" not in install.stdout
        assert fresh_lab.exec("node1", "unzip -v | head -1").stdout.startswith("UnZip")
    finally:
        fresh_lab.exec("node1", f"ip route add default via {fresh_lab.names.gateway}")


def test_fresh_lab_down_stops_the_mirror_and_leaves_nothing_behind(fresh_lab: fleet.Fleet) -> None:
    mirror = fleet._read(fresh_lab.state_dir / "state.json")  # pylint: disable=protected-access
    record = json.loads(mirror)["mirror"]
    assert fleet._pid_alive(record["pid"], record["start_time"])  # pylint: disable=protected-access
    fleet.down(IMAGE_NAME)
    assert not fleet._pid_alive(record["pid"], record["start_time"])  # pylint: disable=protected-access
    assert _system_traces(IMAGE_NAME) == [] and fleet.leftovers(IMAGE_NAME) == []
