"""Contract tests: the stand-in behaves like AnQiCMS 3.5.8 where operations depend on it.

Run: cd <repo> && .venv/bin/python -m pytest tests/standin -q
Real processes, a private MariaDB, real signals; loopback (and a private network namespace) only.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
import zipfile

import pytest

import standin
from harness import Instance, MariaDB, free_port, http, port_answers
from ansible_collections.opsguard.anqicms.tests.utils.wait import wait_for  # harness put .collections on sys.path

ADMIN_PASSWORD = "s3cret-pw"
MIB = 1 << 20


def uniq(prefix: str) -> str:
    """A database name no other test uses."""
    return f"{prefix}_{secrets.token_hex(4)}"


def install(inst: Instance, db: MariaDB, database: str, site_url: str | None = None) -> None:
    """Web install of a running instance into `database`."""
    standin.web_install(inst.base_url, db_host=db.host, db_port=db.port, database=database, user=db.user,
                        password=db.password, admin_password=ADMIN_PASSWORD, site_url=site_url)


def installed(make_instance, db: MariaDB, name: str = "anqicms", site_url: str | None = None,
              env: dict[str, str] | None = None) -> tuple[Instance, str, object]:
    """A started and web-installed instance: (instance, database, process)."""
    inst = make_instance(name)
    proc = inst.start(port=free_port(), env=env)
    database = uniq("anqi")
    install(inst, db, database, site_url)
    return inst, database, proc


def rss_mib(pid: int) -> float:
    """Resident set size of a process in MiB."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def get_json(inst: Instance, path: str, headers: dict[str, str] | None = None) -> dict:
    status, _hdrs, body = inst.get(path, headers=headers)
    assert status == 200, (path, status, body[:300])
    return json.loads(body)


def send_slow_request(inst: Instance, seconds: int) -> socket.socket:
    """Open a connection with GET /__test/sleep in flight; returns the socket (caller closes it)."""
    sock = socket.create_connection(("127.0.0.1", inst.port), timeout=30)
    sock.sendall(f"GET /__test/sleep?seconds={seconds} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    # A second request on another connection completes only after the server read the first one.
    assert inst.get("/__test/runtime")[0] == 200
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


# --- packaging -------------------------------------------------------------------------------------------------

def test_release_zip_is_flat_with_permissions_checksum_and_static_binary(release: pathlib.Path):
    with zipfile.ZipFile(release) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        names = set(infos)
        for required in ("anqicms", "start.sh", "stop.sh", "cache/", "locales/", "template/default/index.html",
                         "template/default/archive.html", "public/static/css/style.css", "source/cwebp_linux_amd64"):
            assert required in names, f"{required} missing from {release.name}"
        assert any(n.startswith("locales/") and not n.endswith("/") for n in names)
        top_level = {"anqicms", "start.sh", "stop.sh", "cache", "locales", "template", "public", "source"}
        assert {n.split("/")[0] for n in names} <= top_level
        for exe in ("anqicms", "start.sh", "stop.sh", "source/cwebp_linux_amd64"):
            assert stat.S_IMODE(infos[exe].external_attr >> 16) == 0o755, exe
        assert stat.S_IMODE(infos["template/default/index.html"].external_attr >> 16) == 0o644
        binary = zf.read("anqicms")
    sha_line = pathlib.Path(f"{release}.sha256").read_text(encoding="utf-8").split()
    assert sha_line == [standin.sha256_of(release), release.name]
    # Statically linked: an ELF64 executable without a PT_INTERP program header.
    assert binary[:4] == b"\x7fELF" and binary[4] == 2
    phoff = int.from_bytes(binary[0x20:0x28], "little")
    phentsize = int.from_bytes(binary[0x36:0x38], "little")
    phnum = int.from_bytes(binary[0x38:0x3A], "little")
    types = [int.from_bytes(binary[phoff + i * phentsize:phoff + i * phentsize + 4], "little") for i in range(phnum)]
    assert 1 in types and 3 not in types, f"program header types {types}: expected PT_LOAD and no PT_INTERP"


def test_build_skips_work_when_sources_are_unchanged(release: pathlib.Path):
    before = release.stat().st_mtime_ns
    proc = subprocess.run([str(standin.BUILD_SCRIPT), str(release.parent)], capture_output=True, text=True,
                          timeout=300, check=True)
    assert "up to date" in proc.stderr
    assert proc.stdout.strip() == str(release)
    assert release.stat().st_mtime_ns == before


def test_start_sh_stop_sh_and_default_port_in_private_namespaces(make_instance):
    """start.sh starts one instance per host at most; stop.sh SIGKILLs every anqicms; default port 8001.

    Runs in private PID and network namespaces so that pgrep/pkill and port 8001 see only this test.
    """
    a, b = make_instance("a"), make_instance("b")
    script = r"""
set -u
ip link set lo up
wait_port() { for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.05; done; return 1; }
count() { pgrep -x anqicms | wc -l; }
cd "$A_DIR" && ./start.sh >/dev/null
wait_port 8001 && echo "default_port=answering"
echo "status_8001=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8001/)"
./start.sh >/dev/null
cd "$B_DIR" && ./start.sh >/dev/null
sleep 0.3
echo "after_second_starts=$(count)"
echo "b_running_log=$(test -e running.log && echo exists || echo absent)"
./anqicms -port 8002 >> running.log 2>&1 &
wait_port 8002 && echo "second_instance=answering"
echo "before_stop=$(count)"
./stop.sh >/dev/null
for _ in $(seq 100); do [ "$(count)" = 0 ] && break; sleep 0.05; done
echo "after_stop=$(count)"
curl -s -o /dev/null http://127.0.0.1:8001/ || echo "port_8001=closed"
"""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "A_DIR": str(a.dir), "B_DIR": str(b.dir)}
    proc = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "bash", "-s"], input=script,
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    out = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    assert out.get("default_port") == "answering", proc.stdout + proc.stderr + a.log
    assert out["status_8001"] == "302"
    assert out["after_second_starts"] == "1"
    assert "already in use" not in a.log, "start.sh started a second process although one was running"
    assert out["b_running_log"] == "absent", "start.sh in B started an instance while A ran"
    assert out["second_instance"] == "answering"
    assert out["before_stop"] == "2"
    assert out["after_stop"] == "0"
    assert out["port_8001"] == "closed"
    assert "exit on signal" not in a.log + b.log, "stop.sh must SIGKILL, not send a catchable signal"
    assert "PID check" in (a.dir / "check.log").read_text(encoding="utf-8")


# --- process start-up ------------------------------------------------------------------------------------------

def test_config_json_is_read_next_to_the_resolved_executable(make_instance, tmp_path: pathlib.Path):
    inst = make_instance()
    real_port, decoy_port = free_port(), free_port()
    (inst.dir / "config.json").write_text(json.dumps({"server": {"port": real_port}}))
    link_dir = tmp_path / "link"
    link_dir.mkdir()
    (link_dir / "config.json").write_text(json.dumps({"server": {"port": decoy_port}}))
    (link_dir / "anqicms").symlink_to(inst.exe)
    inst.port = real_port
    inst.start(exe=link_dir / "anqicms", cwd=link_dir)
    assert inst.get("/")[0] == 302
    assert not port_answers(decoy_port)
    assert f"dir {inst.dir}," in inst.log


def test_port_flag_overrides_config_port(make_instance):
    inst = make_instance()
    config_port, flag_port = free_port(), free_port()
    (inst.dir / "config.json").write_text(json.dumps({"server": {"port": config_port}}))
    inst.start(port=flag_port)
    assert inst.get("/")[0] == 302
    assert not port_answers(config_port)


def test_listens_on_all_interfaces(make_instance):
    inst = make_instance()
    proc = inst.start(port=free_port())
    inodes = set()
    for fd in os.listdir(f"/proc/{proc.pid}/fd"):
        try:
            inodes.add(os.readlink(f"/proc/{proc.pid}/fd/{fd}"))
        except FileNotFoundError:  # closed meanwhile (a finished connection)
            pass
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in pathlib.Path(table).read_text(encoding="utf-8").splitlines()[1:]:
            cols = line.split()
            addr, port_hex = cols[1].rsplit(":", 1)
            if cols[3] == "0A" and int(port_hex, 16) == inst.port and f"socket:[{cols[9]}]" in inodes:
                listening.append(addr)
    assert listening, f"no listening socket of pid {proc.pid} on port {inst.port}"
    assert all(set(addr) == {"0"} for addr in listening), f"bound to {listening}, expected the wildcard address"


def test_exits_255_when_port_already_answers(make_instance):
    inst = make_instance()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = inst.start(port=busy.getsockname()[1], wait=False)
        assert proc.wait(timeout=30) == 255
    assert "already in use" in inst.log


def test_failed_bind_logs_to_error_log_and_exits_0(make_instance):
    inst = make_instance()
    with socket.socket() as bound:  # bound, not listening: nothing answers, but the bind fails
        bound.bind(("0.0.0.0", 0))
        proc = inst.start(port=bound.getsockname()[1], wait=False)
        assert proc.wait(timeout=30) == 0
    assert "address already in use" in inst.error_log


def test_bad_config_json_exits_255(make_instance):
    inst = make_instance()
    (inst.dir / "config.json").write_text('{"mysql": {"port": "not-a-number"}}')
    proc = inst.start(port=free_port(), wait=False)
    assert proc.wait(timeout=30) == 255
    assert "Invalid Config" in inst.error_log


@pytest.mark.parametrize("case", ["wrong-password", "closed-port"])
def test_database_connect_failure_exits_255(make_instance, mariadb: MariaDB, case: str):
    inst = make_instance()
    mysql = mariadb.mysql_json(uniq("anqi"))
    if case == "wrong-password":
        mysql["password"] = "wrong-" + secrets.token_hex(4)
    else:
        mysql["port"] = free_port()
    (inst.dir / "config.json").write_text(json.dumps({"mysql": mysql, "server": {"port": free_port()}}))
    proc = inst.start(wait=False)
    assert proc.wait(timeout=30) == 255
    assert "database connection failed" in inst.error_log
    assert mysql["password"] not in inst.log + inst.error_log


def test_missing_locales_exits_1(make_instance):
    inst = make_instance()
    shutil.rmtree(inst.dir / "locales")
    proc = inst.start(port=free_port(), wait=False)
    assert proc.wait(timeout=30) == 1


def test_start_sigkills_other_processes_running_the_same_executable_path(make_instance):
    a, b = make_instance("a"), make_instance("b")
    first = a.start(port=free_port())
    other_dir = b.start(port=free_port())
    second = a.start(port=free_port())
    assert first.wait(timeout=30) == -signal.SIGKILL
    assert second.poll() is None and other_dir.poll() is None
    assert f"killing process {first.pid}" in a.log


# --- install ---------------------------------------------------------------------------------------------------

def test_everything_redirects_to_install_until_a_database_is_configured(make_instance):
    inst = make_instance()
    inst.start(port=free_port())
    for path in ("/", "/archive/1", "/system/api/version/info", "/admin"):
        status, headers, _body = inst.get(path)
        assert (status, headers.get("Location")) == (302, "/install"), path
    assert inst.post("/api/archive", b"title=x")[0] == 302
    status, _hdrs, body = inst.get("/static/css/style.css")
    assert status == 200 and b"font-family" in body
    status, _hdrs, body = inst.get("/install")
    assert status == 200
    for name in ("host", "port", "database", "user", "password", "admin_user", "admin_password", "base_url",
                 "preview_data"):
        assert f'name="{name}"'.encode() in body, name
    with pytest.raises(standin.StandinError, match="not installed"):
        standin.version(inst.base_url)


def test_install_rejects_an_admin_password_shorter_than_6(make_instance, mariadb: MariaDB):
    inst = make_instance()
    inst.start(port=free_port())
    database = uniq("anqi")
    with pytest.raises(standin.StandinError, match="6"):
        standin.web_install(inst.base_url, db_host=mariadb.host, db_port=mariadb.port, database=database,
                            user=mariadb.user, password=mariadb.password, admin_password="12345")
    assert not (inst.dir / "config.json").exists()
    assert mariadb.sql(f"SHOW DATABASES LIKE '{database}'") == []
    assert inst.get("/")[0] == 302


def test_web_install_creates_database_schema_config_site_and_admin(make_instance, mariadb: MariaDB):
    inst = make_instance()
    inst.start(port=free_port())
    database = uniq("anqi")
    form = {"host": mariadb.host, "port": str(mariadb.port), "database": database, "user": mariadb.user,
            "password": mariadb.password, "admin_user": "boss", "admin_password": ADMIN_PASSWORD,
            "base_url": "http://www.example.test", "preview_data": "1"}
    from urllib.parse import urlencode  # pylint: disable=import-outside-toplevel
    status, _hdrs, body = inst.post("/install", urlencode(form).encode())
    assert status == 200 and json.loads(body)["code"] == 0, body
    assert mariadb.sql(f"SHOW DATABASES LIKE '{database}'") == [[database]]
    tables = {row[0] for row in mariadb.sql(f"SHOW TABLES FROM `{database}`")}
    assert tables >= {"websites", "archives", "attachments", "admins", "settings"}
    expected = {"mysql": {"database": database, "user": mariadb.user, "password": mariadb.password,
                          "host": mariadb.host, "port": mariadb.port, "use_default": False},
                "server": {"env": "production", "port": inst.port, "log_level": "error"}}
    config = inst.dir / "config.json"
    assert config.read_text(encoding="utf-8") == json.dumps(expected, indent="\t")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(config.stat().st_mode) == 0o666 & ~umask
    site = mariadb.sql(f"SELECT id, root_path, mysql, base_url FROM `{database}`.websites")
    assert len(site) == 1 and site[0][0] == "1" and site[0][1] == str(inst.dir)
    assert json.loads(site[0][2]) == expected["mysql"] and site[0][3] == "http://www.example.test"
    admins = mariadb.sql(f"SELECT user_name, password FROM `{database}`.admins")
    assert len(admins) == 1 and admins[0][0] == "boss"
    assert ADMIN_PASSWORD not in admins[0][1] and admins[0][1].startswith("sha256$")
    assert mariadb.sql(f"SELECT COUNT(*) FROM `{database}`.archives") == [["3"]]
    assert (inst.dir / "cache").is_dir() and (inst.dir / "data").is_dir() and (inst.dir / "public/uploads").is_dir()
    assert inst.get("/")[0] == 200
    assert inst.get("/install")[0] == 302
    with pytest.raises(standin.StandinError, match="already installed"):
        install(inst, mariadb, database)


def _password_matches(stored: str, password: str) -> bool:
    scheme, salt, digest = stored.split("$")
    return scheme == "sha256" and hashlib.sha256(bytes.fromhex(salt) + password.encode()).hexdigest() == digest


def test_environment_install_rewrites_config_at_every_start(make_instance, mariadb: MariaDB):
    inst = make_instance()
    port = free_port()
    inst.port = port
    (inst.dir / "config.json").write_text(json.dumps({
        "mysql": {"database": "old", "user": "old", "password": "old", "host": "10.9.9.9", "port": 1, "extra": 1},
        "server": {"env": "development", "port": port, "log_level": "info", "site_name": "dropped"},
        "sparks": {"x": {}}, "unknown": True}, indent=2))
    database = uniq("anqi")
    env = {"MYSQL_HOST": mariadb.host, "MYSQL_PORT": str(mariadb.port), "MYSQL_DATABASE": database,
           "MYSQL_USER": mariadb.user, "MYSQL_PASSWORD": mariadb.password}
    proc = inst.start(env=env)
    expected = {"mysql": {"database": database, "user": mariadb.user, "password": mariadb.password,
                          "host": mariadb.host, "port": mariadb.port, "use_default": False},
                "server": {"env": "development", "port": port, "log_level": "info"}}
    assert (inst.dir / "config.json").read_text(encoding="utf-8") == json.dumps(expected, indent="\t")
    assert standin.version(inst.base_url)["data"]["version"] == "3.5.8"
    admins = mariadb.sql(f"SELECT user_name, password FROM `{database}`.admins")
    assert len(admins) == 1 and admins[0][0] == "admin" and _password_matches(admins[0][1], "123456")
    # Every start: a different MYSQL_DATABASE rewrites config.json again and installs there.
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    database2 = uniq("anqi")
    inst.start(env={**env, "MYSQL_DATABASE": database2})
    assert json.loads((inst.dir / "config.json").read_text(encoding="utf-8"))["mysql"]["database"] == database2
    assert mariadb.sql(f"SELECT user_name FROM `{database2}`.admins") == [["admin"]]


def test_environment_install_defaults_to_root_and_port_3306(make_instance):
    inst = make_instance()
    root_password = "rootpw-" + secrets.token_hex(4)
    env = {"MYSQL_HOST": "127.0.0.1", "MYSQL_DATABASE": "anqi_default", "MYSQL_ROOT_PASSWORD": root_password}
    proc = inst.start(port=free_port(), env=env, wait=False)
    assert proc.wait(timeout=30) == 255  # the private test DB is not on 3306 and root has no TCP password
    mysql = json.loads((inst.dir / "config.json").read_text(encoding="utf-8"))["mysql"]
    assert (mysql["user"], mysql["password"], mysql["port"]) == ("root", root_password, 3306)


# --- database pools --------------------------------------------------------------------------------------------

def test_pool_is_fixed_at_20_open_500_idle_and_dsn_uses_utf8mb4_parsetime_local(make_instance, mariadb: MariaDB):
    inst, database, _proc = installed(make_instance, mariadb)
    seen: list[int] = []
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(inst.get("/__test/dbsleep?seconds=2", timeout=30)[0]))
               for _thread_no in range(30)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        seen.append(mariadb.connections(database))
        time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=30)
    assert results == [200] * 30
    assert max(seen) == 20, f"connections seen during 30 concurrent queries: max {max(seen)}"
    stats = get_json(inst, "/__test/db")["data"]
    assert stats["max_open_connections"] == 20
    assert stats["max_idle_closed"] == 0, "idle connections were closed: MaxIdleConns is below 20"
    assert stats["idle"] == 20 and stats["open_connections"] == 20
    assert mariadb.connections(database) == 20, "the 20 idle connections are kept open"
    assert stats["max_lifetime_seconds"] == 300 and stats["max_idle_setting"] == 500
    assert (stats["charset"], stats["now_type"], stats["now_location"]) == ("utf8mb4", "time.Time", "Local")


# --- sites and pages -------------------------------------------------------------------------------------------

def test_multisite_routing_own_databases_roots_and_broken_sites(make_instance, mariadb: MariaDB, tmp_path: pathlib.Path):
    inst, database, proc = installed(make_instance, mariadb, site_url="http://site1.test")
    root2, root4 = tmp_path / "site2", tmp_path / "site4"
    root2.mkdir()
    root4.mkdir()
    db2, db3, db4 = uniq("s2"), uniq("s3"), uniq("s4")
    rows = [(2, root2, {"database": db2, "use_default": True}, "http://site2.test"),
            (3, tmp_path / "missing", {"database": db3, "use_default": True}, "http://site3.test:8080"),
            (4, root4, mariadb.mysql_json(db4), "http://site4.test")]
    values = ",".join(f"({i}, '{root}', 'site {i}', '{json.dumps(m)}', 1, '{url}')" for i, root, m, url in rows)
    mariadb.sql(f"INSERT INTO `{database}`.websites (id, root_path, name, mysql, status, base_url) VALUES {values}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    inst.start()
    for db_name in (db2, db4):
        assert "archives" in {r[0] for r in mariadb.sql(f"SHOW TABLES FROM `{db_name}`")}
    assert mariadb.sql(f"SHOW DATABASES LIKE '{db3}'") == []
    for sub in ("cache", "data", "public/uploads"):
        assert (root2 / sub).is_dir() and (root4 / sub).is_dir()
    status, _hdrs, body = inst.post("/api/archive", b"title=only-on-site-two", headers={"Host": "site2.test"})
    assert status == 200, body
    new_id = json.loads(body)["data"]["id"]
    assert mariadb.sql(f"SELECT title FROM `{db2}`.archives WHERE id = {new_id}") == [["only-on-site-two"]]
    assert mariadb.sql(f"SELECT COUNT(*) FROM `{database}`.archives") == [["0"]]
    assert b"only-on-site-two" in inst.get("/", headers={"X-Host": "site2.test"})[2]
    assert b"only-on-site-two" not in inst.get("/", headers={"Host": "site4.test"})[2]
    assert b"only-on-site-two" not in inst.get("/", headers={"Host": "unknown.test"})[2]
    assert get_json(inst, "/__test/db", headers={"Host": "site4.test"})["data"]["site_id"] == 4
    assert get_json(inst, "/__test/db", headers={"Host": "nowhere.test"})["data"]["site_id"] == 1
    assert inst.get("/", headers={"Host": "site3.test:8080"})[0] == 503
    assert "root_path" in inst.error_log and "site 3" in inst.error_log


def test_version_info_answers_exact_json_after_install(make_instance, mariadb: MariaDB):
    inst, _db, _proc = installed(make_instance, mariadb)
    status, headers, body = inst.get("/system/api/version/info")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert body == b'{"code":0,"msg":"","data":{"version":"3.5.8","trial":false}}'
    assert standin.version(inst.base_url) == {"code": 0, "msg": "", "data": {"version": "3.5.8", "trial": False}}


def test_pages_come_from_the_database_through_an_unbounded_cache(make_instance, mariadb: MariaDB):
    inst, database, _proc = installed(make_instance, mariadb)
    status, _hdrs, body = inst.post("/api/archive", b"title=First+title&content=%3Cp%3Ehello%3C%2Fp%3E")
    first = json.loads(body)["data"]["id"]
    status, _hdrs, body = inst.get(f"/archive/{first}")
    assert status == 200 and b"First title" in body and b"<p>hello</p>" in body
    assert b"First title" in inst.get("/")[2]
    mariadb.sql(f"UPDATE `{database}`.archives SET title = 'Changed' WHERE id = {first}")
    assert b"First title" in inst.get(f"/archive/{first}")[2], "archive pages are served from the cache"
    assert inst.get("/archive/999999")[0] == 404
    mariadb.sql(f"INSERT INTO `{database}`.archives (title) VALUES " + ",".join(f"('bulk {i}')" for i in range(40)))
    ids = [int(r[0]) for r in mariadb.sql(f"SELECT id FROM `{database}`.archives WHERE title LIKE 'bulk %'")]
    counts = [get_json(inst, "/__test/db")["data"]["cache_entries"]]
    for archive_id in ids:
        assert inst.get(f"/archive/{archive_id}")[0] == 200
        counts.append(get_json(inst, "/__test/db")["data"]["cache_entries"])
    assert counts == sorted(counts) and counts[-1] >= counts[0] + len(ids), counts


def test_archive_write_answers_only_after_commit(make_instance, mariadb: MariaDB):
    inst, database, _proc = installed(make_instance, mariadb)
    for i in range(20):
        status, _hdrs, body = inst.post("/api/archive", f"title=committed-{i}".encode())
        reply = json.loads(body)
        assert status == 200 and reply["code"] == 0
        rows = mariadb.sql(f"SELECT title FROM `{database}`.archives WHERE id = {reply['data']['id']}")
        assert rows == [[f"committed-{i}"]]
    assert inst.post("/api/archive", b"content=no-title")[0] == 400


def _multipart(field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = "standin" + secrets.token_hex(8)
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_attachment_upload_stores_the_file_and_records_a_row(make_instance, mariadb: MariaDB):
    inst, database, _proc = installed(make_instance, mariadb)
    content = secrets.token_bytes(100_000)
    body, ctype = _multipart("file", "photo.JPG", content)
    status, _hdrs, reply = inst.post("/api/attachment", body, content_type=ctype)
    data = json.loads(reply)["data"]
    assert status == 200
    stored = inst.dir / "public" / data["file_location"]
    assert stored.read_bytes() == content and stored.name == hashlib.md5(content).hexdigest() + ".jpg"  # noqa: S324
    assert data["file_location"].startswith("uploads/")
    row = mariadb.sql(f"SELECT file_name, file_location, file_size FROM `{database}`.attachments WHERE id = {data['id']}")
    assert row == [["photo.JPG", data["file_location"], str(len(content))]]
    assert inst.get("/" + data["file_location"])[2] == content


def test_write_errors_answer_500_with_a_nonzero_code(make_instance, mariadb: MariaDB):
    inst, database, _proc = installed(make_instance, mariadb)
    mariadb.sql(f"RENAME TABLE `{database}`.archives TO `{database}`.archives_off")
    try:
        status, _hdrs, body = inst.post("/api/archive", b"title=lost")
    finally:
        mariadb.sql(f"RENAME TABLE `{database}`.archives_off TO `{database}`.archives")
    assert status == 500 and json.loads(body)["code"] != 0
    uploads = inst.dir / "public" / "uploads"
    uploads.rmdir()
    uploads.write_text("not a directory")
    body, ctype = _multipart("file", "a.txt", b"data")
    status, _hdrs, reply = inst.post("/api/attachment", body, content_type=ctype)
    assert status == 500 and json.loads(reply)["code"] != 0
    assert mariadb.sql(f"SELECT COUNT(*) FROM `{database}`.attachments") == [["0"]]


# --- signals ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGQUIT], ids=lambda s: s.name)
def test_stop_signals_exit_0_at_once_cutting_in_flight_requests(make_instance, sig: signal.Signals):
    inst = make_instance()
    proc = inst.start(port=free_port())
    with send_slow_request(inst, 30) as sock:
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=30) == 0
        assert read_all(sock) == b"", "the in-flight request must be cut without an answer"
    assert "exit on signal" in inst.log


def test_signal_during_start_up_is_acted_on_after_start_up(make_instance, mariadb: MariaDB):
    inst, _db, proc = installed(make_instance, mariadb)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc = inst.start(env={"STANDIN_START_DELAY_MS": "2500"}, wait=False)
    log_before = len(inst.log)
    wait_for(lambda: "start-up: initialising" in inst.log[log_before:], 10, "start-up to begin")
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    log = inst.log[log_before:]
    assert "start-up finished" in log, log
    assert log.index("connecting to database") < log.index("start-up finished") < log.index("exit on signal")


# --- test hooks ------------------------------------------------------------------------------------------------

def test_hooks_are_off_without_the_environment_switch(make_instance):
    inst = make_instance()
    proc = inst.start(port=free_port(), hooks=False,
                      env={"STANDIN_HOLD_MIB": "128", "STANDIN_IGNORE_TERM": "1", "STANDIN_CHILDREN": "2"})
    assert inst.get("/__test/runtime")[0] == 302
    assert rss_mib(proc.pid) < 100
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_hold_mib_allocates_and_touches_memory_at_start(make_instance):
    inst = make_instance()
    proc = inst.start(port=free_port(), env={"STANDIN_HOLD_MIB": "128"})
    assert get_json(inst, "/__test/runtime")["data"]["held_mib"] == 128
    assert rss_mib(proc.pid) >= 128


def test_alloc_holds_more_memory(make_instance):
    inst = make_instance()
    proc = inst.start(port=free_port())
    before = rss_mib(proc.pid)
    assert get_json(inst, "/__test/alloc?mib=96")["data"]["held_mib"] == 96
    assert get_json(inst, "/__test/alloc?mib=32")["data"]["held_mib"] == 128
    assert rss_mib(proc.pid) - before >= 120
    assert inst.get("/__test/alloc?mib=0")[0] == 400


def test_leak_grows_until_stopped(make_instance):
    inst = make_instance()
    proc = inst.start(port=free_port())
    assert get_json(inst, "/__test/leak?mib=8&every_ms=20")["code"] == 0
    wait_for(lambda: get_json(inst, "/__test/runtime")["data"]["held_mib"] >= 64, 20, "the leak to reach 64 MiB")
    get_json(inst, "/__test/leak?stop=1")
    held = get_json(inst, "/__test/runtime")["data"]["held_mib"]
    assert held % 8 == 0 and rss_mib(proc.pid) >= held
    time.sleep(0.2)
    assert get_json(inst, "/__test/runtime")["data"]["held_mib"] == held, "the leak kept growing after stop"


def test_sleep_answers_after_the_given_seconds(make_instance):
    inst = make_instance()
    inst.start(port=free_port())
    started = time.monotonic()
    reply = get_json(inst, "/__test/sleep?seconds=1")
    assert reply["data"]["seconds"] == 1 and time.monotonic() - started >= 1
    assert inst.get("/__test/sleep?seconds=-1")[0] == 400


def test_ignore_term_survives_every_stop_signal(make_instance):
    inst = make_instance()
    proc = inst.start(port=free_port(), env={"STANDIN_IGNORE_TERM": "1"})
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        os.kill(proc.pid, sig)
    assert inst.get("/__test/runtime")[0] == 200
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def test_exit_delay_keeps_serving_until_exit(make_instance):
    inst = make_instance()
    proc = inst.start(port=free_port(), env={"STANDIN_EXIT_DELAY_MS": "5000"})
    os.kill(proc.pid, signal.SIGTERM)
    wait_for(lambda: "exit on signal" in inst.log, 10, "the signal to be handled")
    assert inst.get("/__test/runtime")[0] == 200
    assert proc.wait(timeout=30) == 0


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = pathlib.Path(f"/proc/{entry}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_children_outlive_the_parent_until_the_whole_tree_is_killed(make_instance):
    inst = make_instance()
    proc = inst.start(port=free_port(), env={"STANDIN_CHILDREN": "2"})
    wait_for(lambda: len(_children(proc.pid)) == 2, 10, "2 child processes")
    kids = _children(proc.pid)
    for kid in kids:
        assert pathlib.Path(f"/proc/{kid}/comm").read_text(encoding="utf-8").strip() == "cwebp_linux_amd"
        assert os.getpgid(kid) == proc.pid
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert all(_alive(kid) for kid in kids), "children must not die on their own with the parent"
    os.killpg(proc.pid, signal.SIGKILL)
    wait_for(lambda: not any(_alive(kid) for kid in kids), 10, "the children to die")


def test_graceful_drains_in_flight_requests_on_sigterm(make_instance):
    inst = make_instance()
    proc = inst.start(port=free_port(), env={"STANDIN_GRACEFUL": "1"})
    with send_slow_request(inst, 2) as sock:
        os.kill(proc.pid, signal.SIGTERM)
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert proc.wait(timeout=30) == 0
    assert "drained" in inst.log


@pytest.mark.parametrize("limit", [None, "300MiB"])
def test_gomemlimit_reaches_the_go_runtime(make_instance, limit: str | None):
    inst = make_instance()
    inst.start(port=free_port(), env={"GOMEMLIMIT": limit} if limit else {})
    expected = 300 * MIB if limit else (1 << 63) - 1
    assert get_json(inst, "/__test/runtime")["data"]["gomemlimit"] == expected


# --- helpers ---------------------------------------------------------------------------------------------------

def test_deploy_refuses_a_damaged_upload(release: pathlib.Path, tmp_path: pathlib.Path):
    def bad_put(local: str, remote: str) -> None:
        pathlib.Path(remote).write_bytes(pathlib.Path(local).read_bytes()[:-1])

    target = tmp_path / "damaged"
    with pytest.raises(standin.StandinError, match="SHA-256"):
        standin.deploy(standin.local_run, bad_put, str(target), release)
    assert not target.exists()


def test_http_helper_does_not_follow_redirects(make_instance):
    inst = make_instance()
    inst.start(port=free_port())
    assert http(inst.base_url + "/")[0] == 302
