# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Self-healing against the kernel: a leaking AnQiCMS instance recycled by the fleet itself, nobody typing anything.

The fleet (hosts with their own root filesystem, image ``provisioned``, 1536 MiB each): node1 = MariaDB + nginx (site
www.demo.test, backends node2:8001 and node3:8001) + Prometheus + Alertmanager; node2/node3 = AnQiCMS ``www``
(stand-in) deployed with the app role's real memory budget; node_exporter and the memory watcher on every host
(monitor role: watcher every 5 s, scrape and rule evaluation every 5 s, Alertmanager group_wait 5 s, and 1 s for
critical alerts, the role's default). Alertmanager posts to ansible-rulebook on this machine (the lab bridge's
address), which runs the collection's rulebook ``opsguard.anqicms.memory_remediation`` with the fleet's inventory; the
bearer token travels in the environment (OPSGUARD_EDA_TOKEN) and in Alertmanager's configuration on node1
(monitor_alertmanager_webhook_token, 0640 root:prometheus), never on a command line.

One run: steady traffic through nginx (4 clients: reads, writes, 1-s form posts), then node2's instance leaks at a
fixed rate (stand-in hook ``/__test/leak``). Remediated: the alert fires, Alertmanager posts, the rulebook runs
``opsguard.anqicms.recycle``: drain, graceful stop, start, health check, back into rotation. Baseline
(``--baseline``): no ansible-rulebook; the kernel OOM-kills the instance at its MemoryMax and systemd restarts it.
The run prints its timeline (leak start, threshold crossing from the metrics, alert pending/firing from Prometheus'
API, Alertmanager received/sent, rulebook action, drain, stop, start, undrain) and its counts (requests, failed,
acknowledged and missing writes, kernel OOM kills, MemoryMax reached), and appends them to
``.build/heal/results.jsonl``. Before each run the instance's recycle history on its host is cleared (benchmark
reset: the recycle playbook refuses a fourth recycle within an hour) and Alertmanager is restarted without its
notification log (fresh groups: see restart_alertmanager).

  python3 tests/demo/heal.py up                      # fleet, deploy, monitor, Alertmanager -> this machine
  python3 tests/demo/heal.py run [--leak-mib-per-s 4] [--runs 1] [--baseline] [--host node2] [--clients 4]
  python3 tests/demo/heal.py down
  python3 tests/demo/heal.py all                     # up + one remediated run (hacking/demo.sh --heal)
  python3 tests/demo/heal.py table [--results FILE ...]   # the benchmark table (docs/performance.md) of results.jsonl

Exit status of ``run``: 0 when every remediated run had 0 failed requests, 0 missing writes, 0 OOM kills, MemoryMax
not reached and the instance recycled back into rotation; 3 otherwise. Baseline runs only measure (exit 0).
Environment: OPSGUARD_HEAL_LAB (lab name, default ``heal``), OPSGUARD_HEAL_OUT (default .build/heal).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [p for p in (str(HERE), str(REPO / 'tests' / 'lab'), str(REPO / '.collections')) if p not in sys.path]

import fleet  # noqa: E402  pylint: disable=wrong-import-position
import topology  # noqa: E402  pylint: disable=wrong-import-position
import traffic  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.opsguard.anqicms.tests.utils.java import java_home  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.opsguard.anqicms.tests.utils.ports import port_answers  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.opsguard.anqicms.tests.utils.processes import stop_session  # noqa: E402  pylint: disable=wrong-import-position

LAB = os.environ.get('OPSGUARD_HEAL_LAB', 'heal')
OUT = Path(os.environ.get('OPSGUARD_HEAL_OUT', str(REPO / '.build' / 'heal')))
MEMORY = '1536M'
HOSTS = 3
FRONT = 'node1'
UNIT = 'anqicms-www.service'
INSTALL_DIR = '/opt/anqicms/www'
CGROUP = f'/sys/fs/cgroup/memory/system.slice/{UNIT}'  # the test fleet's hosts: cgroup v1 (failcnt, oom_control)
DRAINED_DIR = '/etc/nginx/opsguard-anqicms/drained'
EDA_PORT = 5001
INTERVAL = 5  # watcher, scrape, rule evaluation, Alertmanager group_wait of warnings (seconds)
CRITICAL = ('OpsguardServiceLeakCritical', 'OpsguardServiceNearLimitCritical')
VENV_BIN = REPO / '.venv' / 'bin'
START_TIMEOUT = 300  # ansible-rulebook: JVM + Drools start on a loaded machine
MIB = 1 << 20
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def say(text: str) -> None:
    sys.stdout.write(f'\n\033[1m== {text}\033[0m\n')
    sys.stdout.flush()


def get(url: str, timeout: float = 5) -> bytes:
    with OPENER.open(url, timeout=timeout) as response:
        return response.read()


def get_json(url: str, timeout: float = 5) -> Any:
    return json.loads(get(url, timeout))


def answers(url: str, timeout: float = 2) -> bool:
    try:
        with OPENER.open(url, timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def wait_until(check: Callable[[], Any], seconds: float, what: str, every: float = 2) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = check()
        except (OSError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f'timed out after {seconds:.0f} s waiting for {what}')
        time.sleep(every)


def private_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w', encoding='utf-8') as handle:
        handle.write(text)


def token(lab: fleet.Fleet) -> str:
    """The shared bearer token of Alertmanager and the rulebook's source, generated once per lab (mode 0600)."""
    path = Path(lab.state_dir) / 'heal-token'
    if not path.exists():
        private_write(path, 'eda-' + secrets.token_urlsafe(24))
    return path.read_text(encoding='utf-8').strip()


def eda_address(lab: fleet.Fleet) -> str:
    return lab.names.gateway


def inventory(lab: fleet.Fleet) -> dict[str, Any]:
    """The demo topology (tests/demo/topology.py) with the app role's real budgets and the monitor role's options."""
    inv = topology.inventory(lab)
    for host_vars in inv['all']['children']['app']['hosts'].values():
        host_vars.pop('app_memory_total_bytes', None)  # the real budget: sized from the host's own memory
    inv['all']['vars'].update(
        monitor_interval=INTERVAL, monitor_scrape_interval=INTERVAL, monitor_evaluation_interval=INTERVAL,
        monitor_alertmanager_group_wait=INTERVAL,
        monitor_alertmanager_webhook_url=f'http://{eda_address(lab)}:{EDA_PORT}/alerts')
    front = inv['all']['children']['fleet']['hosts'][FRONT]
    front['monitor_prometheus'] = True
    front['monitor_alertmanager_webhook_token'] = token(lab)  # the inventory file is private (0600)
    return inv


def ansible_env(lab: fleet.Fleet, inv_path: Path) -> dict[str, str]:
    env = lab.ansible_env()
    env.update(ANSIBLE_INVENTORY=str(inv_path), PATH=f'{VENV_BIN}{os.pathsep}{env.get("PATH", "")}')
    return env


def playbook(lab: fleet.Fleet, inv_path: Path, name: str, log: Path, timeout: float = 1500) -> None:
    with open(log, 'wb') as handle:
        proc = subprocess.run([str(VENV_BIN / 'ansible-playbook'), '-i', str(inv_path), name], env=ansible_env(lab, inv_path),
                              stdout=handle, stderr=subprocess.STDOUT, timeout=timeout, check=False, cwd=OUT)
    text = log.read_text(errors='replace')
    recap = text[text.rfind('PLAY RECAP'):] if 'PLAY RECAP' in text else text[-3000:]
    sys.stdout.write(recap.strip() + '\n')
    if proc.returncode != 0:
        raise RuntimeError(f'{name} failed (exit {proc.returncode}): full log in {log}')


def restart_alertmanager(lab: fleet.Fleet) -> None:
    """A fresh Alertmanager: its notification log is kept across restarts and remembers the previous run's alert as
    notified until its resolution is flushed (group_interval, 1 min); the same alert firing again within that minute
    would then not be sent again before repeat_interval (4 h). Benchmark reset, as the recycle history."""
    lab.exec(FRONT, 'systemctl stop prometheus-alertmanager && rm -f /var/lib/prometheus/alertmanager/nflog '
                    '&& systemctl start prometheus-alertmanager', timeout=120)
    wait_until(lambda: answers(f'http://{lab.host(FRONT).address}:9093/-/ready'), 120, 'Alertmanager ready')


def up() -> fleet.Fleet:
    OUT.mkdir(parents=True, exist_ok=True)
    say(f"Test fleet '{LAB}': {HOSTS} hosts with their own root (image provisioned), {MEMORY} each")
    started = time.monotonic()
    lab = fleet.up(HOSTS, MEMORY, name=LAB, image='provisioned')
    inv_path = OUT / 'inventory.yml'
    private_write(inv_path, json.dumps(inventory(lab), indent=1))
    print(f'  up in {time.monotonic() - started:.0f} s: ' + ', '.join(f'{h.name}={h.address}' for h in lab.hosts))
    say('Deploy with the roles (real budgets): MariaDB + nginx on node1, AnQiCMS www on node2 and node3')
    playbook(lab, inv_path, 'opsguard.anqicms.deploy', OUT / 'deploy.log')
    say('Monitor role on every host; Prometheus + Alertmanager on node1 (5 s intervals)')
    playbook(lab, inv_path, str(HERE / 'monitor.yml'), OUT / 'monitor.log')
    front = lab.host(FRONT).address
    wait_until(lambda: len([t for t in get_json(f'http://{front}:9090/api/v1/targets')['data']['activeTargets']
                            if t['health'] == 'up']) == HOSTS, 180, 'Prometheus scraping every host')
    print(f'  Prometheus http://{front}:9090, Alertmanager http://{front}:9093 -> http://{eda_address(lab)}:{EDA_PORT}/alerts')
    print(f'  ready in {time.monotonic() - started:.0f} s')
    return lab


# ---------------------------------------------------------------------------------------------------- the rulebook

class Rulebook:
    """ansible-rulebook with opsguard.anqicms.memory_remediation on the lab bridge address, in its own directory."""

    def __init__(self, lab: fleet.Fleet, work: Path) -> None:
        self.lab, self.work = lab, work
        self.log = work / 'ansible-rulebook.log'
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        host = eda_address(self.lab)
        if port_answers(EDA_PORT, host):
            raise RuntimeError(f'something already listens on {host}:{EDA_PORT}: stop it first')
        (self.work / 'vars.yml').write_text(json.dumps({
            'opsguard_eda_host': host, 'opsguard_eda_port': EDA_PORT,
            'opsguard_eda_pause_file': str(self.work / 'eda-paused')}), encoding='utf-8')
        env = ansible_env(self.lab, OUT / 'inventory.yml')
        env.update(JAVA_HOME=java_home(), OPSGUARD_EDA_TOKEN=token(self.lab), PWD=str(self.work))
        with open(self.log, 'wb') as log:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [str(VENV_BIN / 'ansible-rulebook'), '-r', 'opsguard.anqicms.memory_remediation',
                 '-i', str(OUT / 'inventory.yml'), '--vars', str(self.work / 'vars.yml')],
                cwd=self.work, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        wait_until(lambda: port_answers(EDA_PORT, host) or self.proc.poll() is not None, START_TIMEOUT,
                   f'ansible-rulebook listening on {host}:{EDA_PORT}', every=1)
        if self.proc.poll() is not None:
            raise RuntimeError(f'ansible-rulebook exited: {self.text()[-3000:]}')

    def text(self) -> str:
        return self.log.read_text(errors='replace') if self.log.exists() else ''

    def stop(self) -> None:
        stop_session(self.proc)


# ---------------------------------------------------------------------------------------------------- one run

PROBE = f"""
c={CGROUP}
if [ -d $c ]; then
  echo "usage=$(cat $c/memory.usage_in_bytes) peak=$(cat $c/memory.max_usage_in_bytes) failcnt=$(cat $c/memory.failcnt)"
  echo "oom_kill=$(sed -n 's/^oom_kill //p' $c/memory.oom_control)"
fi
systemctl show -p ActiveState -p MainPID -p NRestarts {UNIT} | tr '\\n' ' '
"""


def probe(lab: fleet.Fleet, host: str) -> dict[str, str]:
    text = lab.exec(host, PROBE, timeout=20, check=False).stdout
    return dict(re.findall(r'(\w+)=(\S*)', text))


def journal(lab: fleet.Fleet, host: str, unit: str, since: float) -> list[tuple[float, str]]:
    out = lab.exec(host, ['journalctl', '-u', unit, '-o', 'json', '--no-pager', '--since', f'@{int(since)}'],
                   timeout=60, check=False).stdout
    lines = []
    for line in out.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = entry.get('MESSAGE')
        if isinstance(message, str):
            lines.append((int(entry['__REALTIME_TIMESTAMP']) / 1e6, message))
    return lines


def threshold_crossing(front: str, host: str, since: float, until: float) -> tuple[float | None, str]:
    """When a critical rule's condition first held for the instance, from Prometheus' stored samples."""
    selector = f'host="{host}",service="anqicms:{INSTALL_DIR}"'
    queries = {'seconds to limit < 120': f'opsguard_service_seconds_to_limit{{{selector}}} < 120',
               'limit ratio >= 0.95': f'opsguard_service_limit_ratio{{{selector}}} >= 0.95'}
    best: tuple[float | None, str] = (None, '')
    for name, query in queries.items():
        params = urllib.parse.urlencode({'query': query, 'start': f'{since:.3f}', 'end': f'{until:.3f}', 'step': '1'})
        try:
            result = get_json(f'http://{front}:9090/api/v1/query_range?{params}', timeout=20)['data']['result']
        except (OSError, ValueError, KeyError):
            continue
        firsts = [float(s['values'][0][0]) for s in result if s.get('values')]
        if firsts and (best[0] is None or min(firsts) < best[0]):
            best = (min(firsts), name)
    return best


def notifications(front: str) -> float:
    text = get(f'http://{front}:9093/metrics').decode()
    return sum(float(m) for m in re.findall(r'^alertmanager_notifications_total\{[^}]*integration="webhook"[^}]*\} (\S+)$', text, re.M))


def critical_group_wait(front: str) -> str | None:
    """The group_wait Alertmanager applies to critical alerts: its child route's, else the top route's."""
    try:
        route = yaml.safe_load(get_json(f'http://{front}:9093/api/v2/status')['config']['original'])['route']
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return None
    for child in route.get('routes') or []:
        if 'severity="critical"' in (child.get('matchers') or []) and 'group_wait' in child:
            return child['group_wait']
    return route.get('group_wait')


def leak_hook(rate: int) -> str:
    mib, every = (rate // 4, 250) if rate >= 4 and rate % 4 == 0 else (rate, 1000)
    return f'/__test/leak?mib={mib}&every_ms={every}'


def settle(lab: fleet.Fleet, host: str) -> None:
    """Before a run: the instance serving, no critical alert left for it, recycle history cleared, fresh Alertmanager."""
    address, front = lab.host(host).address, lab.host(FRONT).address
    wait_until(lambda: answers(f'http://{address}:8001/'), 180, f'{host}:8001 answering')
    lab.exec(host, 'rm -f /var/lib/opsguard/recycle/*.json', check=False)
    wait_until(lambda: not [a for a in get_json(f'http://{front}:9090/api/v1/alerts')['data']['alerts']
                            if a['labels'].get('host') == host and a['labels'].get('severity') == 'critical'] or None,
               300, f'no critical alert left for {host}', every=3)
    assert not lab.exec(FRONT, f'ls {DRAINED_DIR}', check=False).stdout.strip(), 'a backend is still drained at nginx'
    restart_alertmanager(lab)


def one_run(lab: fleet.Fleet, host: str, rate: int, baseline: bool, number: int, clients: int = 4) -> dict[str, Any]:
    front = lab.host(FRONT).address
    address = lab.host(host).address
    work = OUT / time.strftime(f'run-%Y%m%dT%H%M%S-{"baseline" if baseline else "remediated"}-{rate}')
    work.mkdir(parents=True, exist_ok=True)
    say(f'Run {number}: {"baseline (no remediation)" if baseline else "remediated"}, {host} leaks {rate} MiB/s, '
        f'{clients} clients; log {work}')
    settle(lab, host)
    limit = int(lab.exec(host, ['systemctl', 'show', '-p', 'MemoryMax', '--value', UNIT]).stdout)
    before = probe(lab, host)
    group_wait = critical_group_wait(front)
    rulebook = None if baseline else Rulebook(lab, work)
    flow = traffic.Traffic(f'http://{front}', topology.SERVER_NAME, threads=clients, duration=3000, slow_ratio=0.1)
    events: dict[str, float] = {}
    ticks: list[dict[str, Any]] = []

    def mark(name: str, when: float | None = None) -> None:
        if name not in events:
            events[name] = when if when is not None else time.time()
            print(f'  {events[name] - events.get("leak start", events[name]):7.1f} s  {name}')
    try:
        if rulebook:
            rulebook.start()
            print(f'  ansible-rulebook listening on {eda_address(lab)}:{EDA_PORT}')
        notified = notifications(front)
        flow.start()
        time.sleep(5)
        base_usage = int(before.get('usage', 0) or 0)
        print(f'  MemoryMax {limit // MIB} MiB, usage {base_usage // MIB} MiB: the kernel acts in about '
              f'{(limit - base_usage) / MIB / rate:.0f} s')
        lab.exec(host, f'curl -sf -m 20 "http://127.0.0.1:8001{leak_hook(rate)}" >/dev/null', timeout=30)
        mark('leak start')
        t0 = events['leak start']
        budget = (limit - base_usage) / MIB / rate + 240
        out_since: float | None = None
        out_seconds = 0.0
        while time.time() - t0 < budget:
            now = time.time()
            state = probe(lab, host)
            drained = lab.exec(FRONT, f'ls {DRAINED_DIR}', check=False).stdout.split()
            serving = state.get('ActiveState') == 'active' and answers(f'http://{address}:8001/') and not any(
                d.endswith(f'@{address}:8001') for d in drained)
            ticks.append({'t': round(now - t0, 1), 'serving': serving, 'drained': bool(drained), **state})
            if not serving and out_since is None:
                out_since = now
            if serving and out_since is not None:
                out_seconds += now - out_since
                out_since = None
            if drained:
                mark('drain start (nginx)')
            elif 'drain start (nginx)' in events:
                mark('undrain (back in rotation)')
            if int(state.get('oom_kill', 0) or 0) > 0:
                mark('kernel OOM kill (memory.oom_control)')
            if int(state.get('NRestarts', 0) or 0) > int(before.get('NRestarts', 0) or 0):
                mark('systemd restarted the unit (NRestarts)')
            try:
                for alert in get_json(f'http://{front}:9090/api/v1/alerts')['data']['alerts']:
                    labels = alert['labels']
                    if labels.get('host') == host and labels.get('alertname') in CRITICAL:
                        mark(f'alert {alert["state"]} (Prometheus, {labels["alertname"]})')
                if [a for a in get_json(f'http://{front}:9093/api/v2/alerts')
                        if a['labels'].get('host') == host and a['labels'].get('alertname') in CRITICAL]:
                    mark('Alertmanager received')
                if 'Alertmanager received' in events and notifications(front) > notified:
                    mark('Alertmanager sent (webhook)')
                elif 'Alertmanager received' not in events:
                    notified = notifications(front)  # warnings before the critical alert are sent too
            except (OSError, ValueError, KeyError):
                pass
            if rulebook and 'recycling' in rulebook.text():
                mark('rulebook action start (its log)')
            settled = serving and (('undrain (back in rotation)' in events)
                                   or ('systemd restarted the unit (NRestarts)' in events
                                       and now - events['systemd restarted the unit (NRestarts)'] > 15))
            if settled and now - max(events.values()) > 10:
                break
            time.sleep(max(0.0, 1 - (time.time() - now)))
        if out_since is not None:
            out_seconds += time.time() - out_since
        if rulebook and 'undrain (back in rotation)' in events:
            wait_until(lambda: rulebook.proc.poll() is not None or 'PLAY RECAP' in rulebook.text(), 120, 'the recycle run ending')
    finally:
        result = flow.stop()
        lab.exec(host, 'curl -sf -m 20 "http://127.0.0.1:8001/__test/leak?stop=1" >/dev/null', check=False, timeout=30)
        if rulebook:
            rulebook.stop()
    t0 = events.get('leak start', time.time())
    missing = traffic.missing_ids(result.pop('acknowledged_ids'), traffic.lab_sql(LAB, FRONT))
    for when, message in journal(lab, host, UNIT, t0 - 1):
        if message.startswith('Stopping '):
            mark('stop (systemd: Stopping)', when)
        elif message.startswith('Stopped '):
            mark('stopped', when)
        elif 'code=killed' in message or 'oom-kill' in message:
            mark(f'killed: {message.strip()[:60]}', when)
        elif message.startswith('Started '):
            mark('start (systemd: Started)', when)
    crossing, why = threshold_crossing(front, host, t0, time.time())
    if crossing is not None:
        mark(f'threshold crossed ({why}, from the metrics)', crossing)
    oom_kills = max([int(t.get('oom_kill', 0) or 0) for t in ticks] + [0])
    kills = [m for _when, m in journal(lab, host, UNIT, t0 - 1) if 'code=killed' in m]
    peak = max([int(t.get('peak', 0) or 0) for t in ticks] + [0])
    failcnt = max([int(t.get('failcnt', 0) or 0) for t in ticks] + [0])
    summary = {
        'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t0)), 'mode': 'baseline' if baseline else 'remediated',
        'leak_mib_per_s': rate, 'clients': clients, 'critical_group_wait': group_wait, 'host': host,
        'memory_max_bytes': limit, 'peak_usage_bytes': peak,
        # a kill by the cgroup's OOM killer is MemoryMax reached; the unit's cgroup is recreated at its restart, so
        # failcnt and the peak are the last ones sampled before
        'memory_max_reached': failcnt > 0 or peak >= limit or bool(kills), 'failcnt': failcnt,
        'oom_kills': max(oom_kills, len(kills)), 'kill_messages': kills[:5],
        'requests': result['requests'], 'failed': result['failed'], 'failures': result['failures'][:10],
        'acknowledged_writes': result['acknowledged_writes'], 'missing_writes': len(missing),
        'capacity_reduced_seconds': round(out_seconds, 1), 'loadavg_1m': round(os.getloadavg()[0], 2),
        'timeline': {k: round(v - t0, 1) for k, v in sorted(events.items(), key=lambda kv: kv[1])},
    }
    recycled = 'undrain (back in rotation)' in events and 'start (systemd: Started)' in events
    summary['healed'] = (recycled and summary['failed'] == 0 and summary['missing_writes'] == 0
                         and summary['oom_kills'] == 0 and not summary['memory_max_reached'])
    (work / 'ticks.json').write_text(json.dumps(ticks) + '\n', encoding='utf-8')
    with open(OUT / 'results.jsonl', 'a', encoding='utf-8') as handle:
        handle.write(json.dumps(summary) + '\n')
    report(summary)
    return summary


def report(s: dict[str, Any]) -> None:
    say(f'Timeline ({s["mode"]}, {s["leak_mib_per_s"]} MiB/s, {s.get("clients", 4)} clients, seconds after the leak started)')
    for name, at in s['timeline'].items():
        print(f'  {at:7.1f} s  {name}')
    say('Counts')
    print(f'  requests through nginx: {s["requests"]}, failed: {s["failed"]}')
    for failure in s['failures'][:5]:
        print(f'    {failure}')
    print(f'  acknowledged writes: {s["acknowledged_writes"]}, missing from the database: {s["missing_writes"]}')
    print(f'  kernel OOM kills: {s["oom_kills"]} {s["kill_messages"][:2] if s["kill_messages"] else ""}')
    print(f'  MemoryMax {s["memory_max_bytes"] // MIB} MiB reached: {"yes" if s["memory_max_reached"] else "no"} '
          f'(peak {s["peak_usage_bytes"] // MIB} MiB, failcnt {s["failcnt"]})')
    print(f'  {s["host"]} out of service (drained or not answering): {s["capacity_reduced_seconds"]} s')
    if s['mode'] == 'remediated':
        print(f'  healed before the kernel acted: {"yes" if s["healed"] else "NO"}')


# ---------------------------------------------------------------------------------------------------- the table

PIECES = (('threshold', 'pending', 'threshold crossed', 'alert pending'),
          ('pending', 'firing', 'alert pending', 'alert firing'),
          ('firing', 'sent', 'alert firing', 'Alertmanager sent'),
          ('sent', 'rulebook', 'Alertmanager sent', 'rulebook action start'),
          ('rulebook', 'drain', 'rulebook action start', 'drain start'),
          ('drain', 'stop', 'drain start', 'stop (systemd'))


def at(timeline: dict[str, float], prefix: str) -> float | None:
    """Seconds after the leak started of the first timeline entry whose name starts with ``prefix``."""
    found = [v for k, v in timeline.items() if k.startswith(prefix)]
    return min(found) if found else None


def spread(values: list[float | None]) -> str:
    """``median (min-max)`` of the known values, ``—`` when none is."""
    known = sorted(v for v in values if v is not None)
    if not known:
        return '—'
    middle = len(known) // 2
    median = known[middle] if len(known) % 2 else (known[middle - 1] + known[middle]) / 2
    return f'{median:.1f}' if len(known) == 1 else f'{median:.1f} ({known[0]:.1f}–{known[-1]:.1f})'


def gap(timeline: dict[str, float], start: str, end: str) -> float | None:
    first, last = at(timeline, start), at(timeline, end)
    return None if first is None or last is None else last - first


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: one row per (mode, leak rate, clients) with the counts summed and the times as median (min-max)."""
    groups: dict[tuple[str, int, int, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r['mode'], r['leak_mib_per_s'], r.get('clients', 4), r.get('critical_group_wait') or '—'),
                          []).append(r)
    head = ('| mode | leak MiB/s | clients | group_wait | runs | healed | requests / failed | acked writes / lost | OOM kills | '
            'MemoryMax reached | peak MiB | threshold (s after leak start) | threshold → drain | kernel kill | '
            'out of service s |')
    lines = [head, '|' + '---|' * head.count(' | ') + '---|']
    for (mode, rate, clients, wait), runs in sorted(groups.items(), key=lambda kv: (kv[0][0] != 'remediated', kv[0][1:])):
        healed = sum(1 for r in runs if r.get('healed')) if mode == 'remediated' else '—'
        lines.append('| ' + ' | '.join(str(c) for c in (
            mode, rate, clients, wait if mode == 'remediated' else '—', len(runs), healed,
            f"{sum(r['requests'] for r in runs)} / **{sum(r['failed'] for r in runs)}**",
            f"{sum(r['acknowledged_writes'] for r in runs)} / **{sum(r['missing_writes'] for r in runs)}**",
            f"**{sum(r['oom_kills'] for r in runs)}**", sum(1 for r in runs if r['memory_max_reached']),
            max(r['peak_usage_bytes'] for r in runs) // MIB,
            spread([at(r['timeline'], 'threshold crossed') for r in runs]),
            spread([gap(r['timeline'], 'threshold crossed', 'drain start') for r in runs]),
            spread([at(r['timeline'], 'killed') for r in runs]),
            spread([r['capacity_reduced_seconds'] for r in runs]))) + ' |')
    pieces = [r for r in results if r['mode'] == 'remediated']
    if pieces:
        lines += ['', '| leak MiB/s | clients | group_wait | ' + ' | '.join(f'{a} → {b}' for a, b, _s, _e in PIECES) + ' |',
                  '|---|---|---|' + '---|' * len(PIECES)]
        for (mode, rate, clients, wait), runs in sorted(groups.items()):
            if mode == 'remediated':
                lines.append(f'| {rate} | {clients} | {wait} | ' + ' | '.join(
                    spread([gap(r['timeline'], start, end) for r in runs]) for _a, _b, start, end in PIECES) + ' |')
    return '\n'.join(lines) + '\n'


def run(args: argparse.Namespace) -> int:
    lab = fleet.current(LAB)
    if lab is None:
        sys.stderr.write(f'lab {LAB!r} is not up: run `{sys.argv[0]} up` first\n')
        return 1
    private_write(OUT / 'inventory.yml', json.dumps(inventory(lab), indent=1))
    ok = True
    for number in range(1, args.runs + 1):
        summary = one_run(lab, args.host, args.leak_mib_per_s, args.baseline, number, args.clients)
        ok = ok and (args.baseline or summary['healed'])
    return 0 if ok else 3


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('command', choices=('up', 'run', 'down', 'all', 'table'))
    parser.add_argument('--leak-mib-per-s', type=int, default=4)
    parser.add_argument('--runs', type=int, default=1)
    parser.add_argument('--baseline', action='store_true', help='no remediation: let the kernel act')
    parser.add_argument('--host', default='node2', choices=('node2', 'node3'))
    parser.add_argument('--clients', type=int, default=4, help='traffic threads through nginx (4)')
    parser.add_argument('--results', nargs='*', default=[], help='table: results.jsonl files (default: OUT/results.jsonl)')
    args = parser.parse_args(argv)
    if not 1 <= args.leak_mib_per_s <= 256 or not 1 <= args.runs <= 20 or not 1 <= args.clients <= 64:
        parser.error('--leak-mib-per-s must be 1..256, --runs 1..20 and --clients 1..64')
    if args.command == 'table':
        paths = [Path(p) for p in args.results] or [OUT / 'results.jsonl']
        sys.stdout.write(table([json.loads(line) for p in paths for line in p.read_text(encoding='utf-8').splitlines() if line.strip()]))
        return 0
    if args.command == 'down':
        fleet.down(LAB)
        print(f"fleet '{LAB}' is down")
        return 0
    if os.geteuid() != 0:
        sys.stderr.write('the test fleet needs root (namespaces, cgroups)\n')
        return 1
    if args.command in ('up', 'all'):
        up()
    if args.command == 'up':
        return 0
    status = run(args)
    if args.command == 'all':
        print(f'\nResults: {OUT}/results.jsonl; the fleet stays up for a look around (Prometheus and Alertmanager on '
              f'node1). Tear it down with: make demo-down (or OPSGUARD_HEAL_LAB={LAB} {sys.argv[0]} down)')
    return status


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
