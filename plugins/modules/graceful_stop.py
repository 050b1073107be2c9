#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: graceful_stop
short_description: Stop one AnQiCMS instance (or any process) gracefully, with identity checks and escalation
version_added: 0.1.0
description:
  - Identifies one process by O(pid), O(pidfile), O(port), O(systemd_unit) or O(exe), proves its identity
    (PID, start time and resolved executable) and proves it again before every signal. Signals go through a
    pidfd where the kernel has one, so a reused PID is never hit.
  - Optionally waits until the process has no established client connections on its listening ports (O(drain)),
    saves post-mortem diagnostics (O(diagnostics_dir)), then sends O(signal) to the process and its children,
    waits up to O(timeout) and sends SIGKILL to what is left when O(escalate) is true.
  - A stale pidfile, a PID that now belongs to another program, or a description that fits several unrelated
    processes makes the module fail without signalling anything.
  - Reports what it freed, whether the listening ports were released, and the watchdogs (cron lines running the
    instance's C(start.sh), the unit's C(Restart=)) that could start the process again.
  - AnQiCMS exits at once on SIGTERM and cuts in-flight requests; drain first (stop sending traffic at the proxy,
    then O(drain=true)) to let them finish.
author:
  - opsguard contributors (@opsguard)
requirements:
  - Linux with /proc; a kernel with pidfd support (5.3+) is used when present.
  - Root, or the same user as the target process.
  - C(systemctl) on the host for O(systemd_unit).
extends_documentation_fragment:
  - opsguard.anqicms.attributes
  - opsguard.anqicms.attributes.platform
attributes:
  check_mode:
    support: full
    details: Identifies the target and reports the plan (what would be signalled, watchdogs); sends nothing, writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A second run finds the target stopped and reports RV(outcome=already_stopped) without a change.
  platform:
    platforms: posix
    support: partial
    details: Linux only (reads /proc).
options:
  pid:
    description:
      - PID of the process to stop. A PID that does not exist means the process is already stopped.
      - Must be between 1 and the kernel's C(pid_max) minus 1 (C(/proc/sys/kernel/pid_max)); other values are refused.
    type: int
  pidfile:
    description:
      - Absolute path of a file holding the PID on its first line.
      - Missing, or naming a PID that is not running, means already stopped.
      - The content is untrusted. Refused when the file is a symbolic link (directories on the way may be links),
        not a regular file (FIFO, device, directory), or its first line is not an ASCII decimal PID between 1 and
        C(pid_max) minus 1. Only the first 4096 bytes are read.
      - Refused when the live PID started more than 2 seconds after the pidfile was last written (PID reuse),
        or does not satisfy O(exe), O(name) or O(cmdline_pattern).
    type: path
  port:
    description:
      - TCP port; the target is the process that holds the listening socket (a parent and the children sharing
        the socket count as one). Nothing listening means already stopped.
      - Must be between 1 and 65535.
    type: int
  systemd_unit:
    description:
      - A systemd unit to stop through systemd (C(systemctl stop)), so its restart logic and state stay consistent.
      - The unit's own C(KillSignal=) applies; O(signal) is not used. Escalation uses C(systemctl kill --signal=SIGKILL).
      - An inactive or failed unit means already stopped.
      - A unit whose process ended (for example an OOM kill) and which systemd is about to start again (C(SubState=auto-restart),
        no main PID) is given up to O(timeout) seconds to restart; the process it starts is then proven and stopped as usual.
        Nothing is done to the unit before a main process is proven. In check mode there is no wait, and the module fails.
      - One unit name (letters, digits and C(:_.@\-), at most 256 characters); glob patterns are refused, since
        C(systemctl stop) would stop every unit they match.
    type: str
  exe:
    description:
      - Absolute path of the executable, compared with the resolved C(/proc/PID/exe). Symbolic links and C(..) in
        it are resolved first (a process started through C(/opt/anqicms/current/anqicms) shows the link's target).
      - Alone it is the target (one process tree must match; several unrelated ones are refused).
      - With O(pid), O(pidfile), O(port) or O(systemd_unit) it is an identity constraint the process must satisfy.
    type: path
  name:
    description:
      - Identity constraint; the process name (C(comm)) or the basename of its executable must equal it.
      - Must not be empty (an empty constraint is refused, never ignored).
    type: str
  cmdline_pattern:
    description:
      - Identity constraint; a Python regular expression searched in the command line (arguments joined by spaces).
      - Compiled before anything else happens; an invalid or empty expression, or one longer than 4096 characters,
        is refused.
    type: str
  signal:
    description:
      - The first signal, by name (V(SIGTERM), V(TERM)) or number (ASCII digits, 1 to the highest signal number).
    type: str
    default: SIGTERM
  children:
    description:
      - Also signal the descendants of the process (snapshotted with their identities before the first signal).
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for the process tree to exit after the first signal.
      - From 0 to 86400 (one day); NaN and infinite values are refused, like for every duration option.
    type: float
    default: 30
  escalate:
    description:
      - Send SIGKILL to whatever is still running after O(timeout). When false, a process still running fails the task.
    type: bool
    default: true
  kill_timeout:
    description:
      - Seconds to wait for the exit after SIGKILL (a process in uninterruptible sleep may take a while).
      - From 0 to 86400.
    type: float
    default: 10
  drain:
    description:
      - Before the first signal, wait until no established client connection remains on the target's listening
        ports, or O(drain_timeout) passes. New connections must be stopped at the proxy first; this module only waits.
    type: bool
    default: false
  drain_timeout:
    description:
      - Longest wait for draining, in seconds. The number of connections left is reported.
      - From 0 to 86400.
    type: float
    default: 30
  drain_ports:
    description:
      - Ports to watch while draining. Default is the ports the target listens on (or O(port)).
      - Each between 1 and 65535.
    type: list
    elements: int
  port_release_timeout:
    description:
      - Seconds to wait after the exit for the listening ports to disappear.
      - From 0 to 86400.
    type: float
    default: 5
  diagnostics_dir:
    description:
      - Directory (created with mode 0700 when missing) for one JSON file per stop, written before the first signal.
        It holds memory status and smaps_rollup, threads, file descriptors, connections, command line and limits
        of the target (never its environment).
      - Must be an absolute path; an existing non-directory is refused. A failure to write the file fails the task
        before any signal.
    type: path
  record:
    description:
      - Write the record of the stop (V(stopped_gracefully), V(stopped_forced) or V(failed)) to the host's journal
        (C(SYSLOG_IDENTIFIER=opsguard)) and, with O(notify_url), POST it to a webhook; see M(opsguard.anqicms.action_record)
        and docs/records.md of the collection for the fields and the JSON.
      - Nothing is recorded in check mode or when the target was already stopped. A host without journald or a webhook
        that is down never fails the stop; RV(recorded) says what happened.
    type: bool
    default: true
  notify_url:
    description:
      - An C(http://) or C(https://) URL the record is POSTed to (at most 3 tries within 5 seconds, certificates verified).
        It may carry a token; it is never shown in a message or a result. Checked before anything else.
    type: str
  record_instance:
    description:
      - The instance named in the record. Default the unit (O(systemd_unit)), else the directory of the executable.
      - Names the record only; it does not select or constrain the target. 1 to 255 characters without control characters.
    type: str
  record_reason:
    description:
      - Why the stop is done, for the record (for example the memory verdict). At most 1024 characters.
    type: str
    default: ''
notes:
  - The module never signals PID 1, itself or one of its ancestors.
  - Every option is checked (types, ranges, regular expression, unit name) before anything is read or signalled;
    a bad value fails the task with a message naming the option, the value and what is expected.
  - A task that fails after a signal was sent reports C(changed=true) and lists what was sent in RV(signals).
  - Identity rules are documented in docs/modules/graceful_stop.md of the collection.
seealso:
  - name: systemd.kill
    description: KillSignal=, KillMode= and how systemd stops a unit.
    link: https://www.freedesktop.org/software/systemd/man/systemd.kill.html
  - module: community.general.pids
'''

EXAMPLES = r'''
- name: Stop the instance in /opt/anqicms/site1 (one of several on the host), draining first
  opsguard.anqicms.graceful_stop:
    exe: /opt/anqicms/site1/anqicms
    drain: true
    drain_timeout: 20
    timeout: 15
    diagnostics_dir: /var/log/anqicms-stops
  register: stop

- name: Keep it stopped - disable the cron lines that would start it again
  ansible.builtin.lineinfile:
    path: "{{ item.file }}"
    regexp: "^{{ item.line | regex_escape }}$"
    line: "#{{ item.line }}"
  loop: "{{ stop.watchdogs | selectattr('type', 'equalto', 'cron') }}"

- name: Stop whatever listens on 8001, but only if it is that binary
  opsguard.anqicms.graceful_stop:
    port: 8001
    exe: /opt/anqicms/site1/anqicms

- name: Stop from a pidfile, checking the name
  opsguard.anqicms.graceful_stop:
    pidfile: /run/anqicms.pid
    name: anqicms
    escalate: false

- name: Stop the database through systemd
  opsguard.anqicms.graceful_stop:
    systemd_unit: mariadb.service
    timeout: 120
'''

RETURN = r'''
outcome:
  description:
    - V(stopped_gracefully) (exited after the first signal), V(stopped_forced) (SIGKILL was needed),
      V(already_stopped) (nothing to stop, positively established), V(would_stop) (check mode).
  returned: success
  type: str
  sample: stopped_gracefully
target:
  description: How the target was found and proven, in words.
  returned: always
  type: str
  sample: the process running /opt/anqicms/site1/anqicms is PID 4242 (/opt/anqicms/site1/anqicms, started 2026-01-01 10:00:00)
identity:
  description: Identity of the target process before the first signal.
  returned: when a process was found
  type: dict
  contains:
    pid: {description: PID, type: int, returned: always}
    ppid: {description: Parent PID, type: int, returned: always}
    start_ticks: {description: Start time in clock ticks since boot, type: int, returned: always}
    start_time: {description: "Start time, seconds since the epoch", type: float, returned: always}
    exe: {description: Resolved executable, type: str, returned: always}
    exe_deleted: {description: The executable was replaced or removed since the start, type: bool, returned: always}
    name: {description: Process name (comm), type: str, returned: always}
    cmdline: {description: Command line arguments, type: list, elements: str, returned: always}
  sample: {pid: 4242, ppid: 1, start_ticks: 123456, start_time: 1767261600.0, exe: /opt/anqicms/site1/anqicms,
           exe_deleted: false, name: anqicms, cmdline: [./anqicms]}
pids:
  description: PIDs of the process tree snapshotted before the first signal (target first).
  returned: always
  type: list
  elements: int
  sample: [4242, 4250]
ports:
  description: TCP ports the target listened on.
  returned: always
  type: list
  elements: int
  sample: [8001]
signals:
  description: Every signal sent, in order; also when the task fails after a signal was sent.
  returned: always
  type: list
  elements: dict
  contains:
    pid: {description: PID signalled (the main PID for systemd), type: int, returned: always}
    signal: {description: Signal name, type: str, returned: always}
    time: {description: "When, seconds since the epoch", type: float, returned: always}
    elapsed: {description: Seconds since the first signal, type: float, returned: always}
    via: {description: "V(pidfd), V(kill) or V(systemd)", type: str, returned: always}
  sample: [{pid: 4242, signal: SIGTERM, time: 1767261600.5, elapsed: 0.0, via: pidfd}]
drain:
  description: Draining report.
  returned: always
  type: dict
  contains:
    enabled: {description: Draining was asked for, type: bool, returned: always}
    ports: {description: Ports watched, type: list, elements: int, returned: when enabled}
    connections_at_start: {description: Established client connections when draining began, type: int, returned: when enabled}
    connections_left: {description: Established client connections when the first signal was sent, type: int, returned: when enabled}
    duration: {description: Seconds spent draining, type: float, returned: when enabled}
    timed_out: {description: O(drain_timeout) passed with connections left, type: bool, returned: when enabled}
  sample: {enabled: true, ports: [8001], connections_at_start: 2, connections_left: 0, duration: 1.9, timed_out: false}
stop_duration:
  description: Seconds from the first signal until the whole tree was gone.
  returned: always
  type: float
  sample: 0.012
rss_before_bytes:
  description: Resident memory of the tree before the first signal.
  returned: always
  type: int
  sample: 104857600
rss_freed_bytes:
  description: Resident memory of the tree members that exited.
  returned: always
  type: int
  sample: 104857600
port_released:
  description: The listening ports had no listener any more after the stop; null when the target listened on none.
  returned: always
  type: bool
  sample: true
diagnostics_path:
  description: The JSON diagnostics file written before the first signal (null when not asked for or in check mode).
  returned: always
  type: str
  sample: /var/log/anqicms-stops/graceful-stop-anqicms-4242-20260101T100000Z.json
watchdogs:
  description: Things that could start the process again. Cron lines have C(type=cron), C(file), C(line_number),
    C(line); systemd units have C(type=systemd), C(unit), C(restart).
  returned: always
  type: list
  elements: dict
  sample: [{type: cron, file: /etc/cron.d/anqicms, line_number: 1, line: "* * * * * root /opt/anqicms/site1/start.sh"}]
unit:
  description: State of O(systemd_unit) before the stop (ActiveState, SubState, MainPID, Restart, KillSignal, ...).
  returned: when systemd_unit is given
  type: dict
  sample: {ActiveState: active, MainPID: "812", Restart: on-abort, KillSignal: "15"}
survivors:
  description: Identities of the processes still running when the task failed (O(escalate=false), or SIGKILL did not end them).
  returned: on failure, when processes survived
  type: list
  elements: dict
  sample: [{pid: 4242, ppid: 1, start_ticks: 123456, start_time: 1767261600.0, exe: /opt/anqicms/site1/anqicms, exe_deleted: false,
            name: anqicms}]
unit_after:
  description: State of O(systemd_unit) after the stop (same properties as RV(unit)).
  returned: when systemd_unit is given and the unit was stopped
  type: dict
  sample: {ActiveState: inactive, Result: success, ExecMainCode: "1", ExecMainStatus: "0"}
plan:
  description: What the module does (or would do in check mode) in order.
  returned: always
  type: list
  elements: str
  sample: ["drain ports [8001] for up to 30 s", "send SIGTERM to PIDs [4242]", "SIGKILL survivors after 30 s"]
recorded:
  description:
    - What was recorded (O(record)). C(journal) (bool) and C(journal_error); C(webhook) (V(delivered), V(failed) or V(off)),
      C(webhook_error), C(webhook_attempts) and C(webhook_target) (C(scheme://host:port) only); C(seconds) (what recording took); C(fields), the record
      (C(ACTION=stop), C(INSTANCE), C(OUTCOME), C(REASON), C(HOST), C(TIME), C(PID), C(UNIT), C(EXE), C(SIGNAL),
      C(DURATION), C(RSS_BEFORE), C(RSS_FREED), C(DIAGNOSTICS), C(PORTS), C(PORT_RELEASED), C(DRAIN_CONNECTIONS_LEFT),
      C(ERROR)).
  returned: always
  type: dict
  sample: {journal: true, journal_error: null, webhook: "off", webhook_error: null, webhook_attempts: 0,
           fields: {ACTION: stop, INSTANCE: /opt/anqicms/site1, OUTCOME: stopped_gracefully, RSS_FREED: 104857600}}
'''

import os
import re
import time
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.opsguard.anqicms.plugins.module_utils.options import new_module

try:
    from ansible_collections.opsguard.anqicms.plugins.module_utils import bounds, diagnostics, paths, procfs, sockets, stopping, targets, watchdogs
    from ansible_collections.opsguard.anqicms.plugins.module_utils import record
    HAS_PROCESS_UTILS = True
    PROCESS_UTILS_ERROR = None
except ImportError:  # pragma: no cover - only when the collection is broken
    HAS_PROCESS_UTILS = False
    PROCESS_UTILS_ERROR = traceback.format_exc()

ProcessError = procfs.ProcessError if HAS_PROCESS_UTILS else Exception


def _hostname() -> str:
    try:
        return os.uname()[1]
    except OSError:
        return 'this host'


class Stopper(object):
    """One run of the module."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.p = module.params
        self.systemd = stopping.Systemd(self.systemctl)
        self.result = {
            'changed': False, 'outcome': None, 'target': '', 'identity': None, 'pids': [], 'ports': [], 'signals': [],
            'drain': {'enabled': bool(self.p['drain'])}, 'stop_duration': 0.0, 'rss_before_bytes': 0,
            'rss_freed_bytes': 0, 'port_released': None, 'diagnostics_path': None, 'watchdogs': [], 'plan': [],
            'recorded': record.not_recorded('nothing was stopped'),
        }
        self.stopping = None  # (identity, unit) once the stop itself has begun: from then on, a record is written

    def write_record(self, outcome: str, error: str | None = None) -> None:
        """Write the record of this stop (journal, webhook); never fails the module."""
        p = self.p
        identity, unit = self.stopping
        unit_name = (unit or {}).get('Id') or p['systemd_unit']
        instance = p['record_instance'] or unit_name or os.path.dirname(identity.exe) or identity.exe
        drain = self.result['drain']
        fields = {
            'pid': identity.pid, 'unit': unit_name, 'exe': identity.exe,
            'signal': ','.join(s['signal'] for s in self.result['signals']) or None,
            'duration': round(self.result['stop_duration'], 3) if self.result['signals'] else None,
            'rss_before': self.result['rss_before_bytes'], 'rss_freed': self.result['rss_freed_bytes'],
            'diagnostics': self.result['diagnostics_path'], 'ports': ','.join(str(x) for x in self.result['ports']) or None,
            'port_released': self.result['port_released'],
            'drain_connections_left': drain.get('connections_left') if drain.get('enabled') else None,
            'error': error,
        }
        self.result['recorded'] = record.for_module(p, 'stop', instance, outcome, fields, self.module.check_mode)

    def fail(self, msg: str, **extra) -> None:
        signals = self.result['signals']
        if not self.module.check_mode:
            # Whatever was already done is a change, and the message says what it was.
            self.result['changed'] = bool(signals) or bool(self.result['diagnostics_path'])
        if signals and 'signals sent' not in msg:
            sent = ', '.join('%s to PID %d via %s' % (s['signal'], s['pid'], s['via']) for s in signals)
            msg += ' (signals sent before this: %s)' % sent
        if self.stopping is not None and not self.module.check_mode:
            self.write_record('failed', msg)
        self.module.fail_json(msg='%s: %s' % (_hostname(), msg), **dict(self.result, **extra))

    def systemctl(self, args: list) -> tuple:
        """Run systemctl with args: (rc, stdout, stderr)."""
        return self.module.run_command([self.module.get_bin_path('systemctl', required=True)] + list(args))

    def restart_of(self, unit_name: str) -> str | None:
        if not os.path.isdir('/run/systemd/system') or not self.module.get_bin_path('systemctl'):
            return None
        return self.systemd.restart_of(unit_name)

    # ------------------------------------------------------------ main flow

    def run(self) -> None:
        try:
            self.run_checked()
        except ProcessError as e:
            self.fail(str(e))
        except Exception as e:  # pylint: disable=broad-except
            # Never a bare traceback, and never "changed=false" once something was signalled.
            done = 'nothing signalled' if not self.result['signals'] else 'the stop did not finish'
            self.fail('unexpected error, %s: %s: %s' % (done, type(e).__name__, e), exception=traceback.format_exc())

    def run_checked(self) -> None:
        p = self.p
        try:
            signum = stopping.signal_number(p['signal'])
            if p['systemd_unit']:
                found = self.systemd.resolve(p['systemd_unit'], p['exe'], p['name'], p['cmdline_pattern'],
                                             restart_wait=0.0 if self.module.check_mode else p['timeout'])
                identity, members, unit = found['identity'], found['members'], found['unit']
                self.result['unit'] = unit
                self.result['target'] = found['target']
                if identity is None:
                    self.result['watchdogs'] = [{'type': 'systemd', 'unit': unit.get('Id') or p['systemd_unit'],
                                                 'restart': unit.get('Restart')}]
            else:
                found = targets.resolve_target(pid=p['pid'], pidfile=p['pidfile'], port=p['port'], exe=p['exe'], name=p['name'],
                                               cmdline_pattern=p['cmdline_pattern'])
                self.result['target'] = found['reason']
                identity, members, unit = found['identity'], None, None
        except ProcessError as e:
            self.fail(str(e))
            return
        if identity is None:
            self.result['outcome'] = 'already_stopped'
            self.module.exit_json(**self.result)
        ident_dict = identity.as_dict()
        ident_dict['cmdline'] = procfs.read_cmdline(identity.pid)
        self.result['identity'] = ident_dict
        if members is None:
            members = procfs.snapshot_tree(identity, p['children'])
            protected = targets.protected_pids()
            members = [m for m in members if m.pid not in protected]
        self.result['pids'] = [m.pid for m in members]
        inodes = set()
        for m in members:
            inodes |= sockets.socket_inodes(m.pid)
        entries = sockets.tcp_table(sockets.TCP_LISTEN, identity.pid)
        ports = sockets.listening_ports(entries, inodes)
        if p['port'] is not None and p['port'] not in ports:
            ports.append(p['port'])
        self.result['ports'] = ports
        self.result['rss_before_bytes'] = sum(procfs.rss_bytes(m.pid) for m in members)
        self.result['watchdogs'] = watchdogs.watchdogs(identity, unit, self.restart_of)
        drain_ports = p['drain_ports'] or ports
        plan = []
        if p['drain']:
            plan.append('drain: wait up to %s s for no established connections on ports %s' % (p['drain_timeout'], drain_ports))
        if p['diagnostics_dir']:
            plan.append('write diagnostics to %s' % p['diagnostics_dir'])
        if unit is not None:
            plan.append('systemctl stop %s (KillSignal=%s, KillMode=%s) and wait up to %s s for PIDs %s'
                        % (unit['Id'], unit.get('KillSignal'), unit.get('KillMode'), p['timeout'], self.result['pids']))
            if p['escalate']:
                plan.append('systemctl kill --signal=SIGKILL %s if still running after %s s' % (unit['Id'], p['timeout']))
        else:
            kids = ' and its children %s' % self.result['pids'][1:] if len(members) > 1 else ''
            plan.append('send %s to PID %d%s' % (stopping.signal_name(signum), identity.pid, kids))
            plan.append(('send SIGKILL to survivors after %s s' if p['escalate'] else 'fail if still running after %s s') % p['timeout'])
        if ports:
            plan.append('confirm ports %s are released' % ports)
        self.result['plan'] = plan
        if self.module.check_mode:
            self.result['changed'] = True
            self.result['outcome'] = 'would_stop'
            self.module.exit_json(**self.result)
        self.stop(identity, members, unit, signum, ports, drain_ports)

    def stop(self, identity, members, unit, signum, ports, drain_ports) -> None:
        p = self.p
        self.stopping = (identity, unit)
        if p['drain']:
            if drain_ports:
                self.result['drain'] = sockets.wait_drained(identity.pid, drain_ports, p['drain_timeout'],
                                                            members=[m.pid for m in members])
            else:
                self.result['drain'] = {'enabled': True, 'ports': [], 'connections_at_start': 0, 'connections_left': 0,
                                        'duration': 0.0, 'timed_out': False}
                self.module.warn('drain asked for, but PID %d listens on no TCP port: nothing to drain' % identity.pid)
        if p['diagnostics_dir']:
            stamp = time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())
            filename = 'graceful-stop-%s-%d-%s.json' % (identity.name.replace('/', '_'), identity.pid, stamp)
            data = diagnostics.collect_diagnostics(identity, members)
            data['target'] = self.result['target']
            data['drain'] = self.result['drain']
            self.result['diagnostics_path'] = diagnostics.write_json_private(p['diagnostics_dir'], filename, data)
        if unit is not None:
            report = self.systemd.stop(identity, members, unit, p['timeout'], p['escalate'], p['kill_timeout'], self.result['signals'])
            if 'unit_after' in report:
                self.result['unit_after'] = report['unit_after']
        else:
            current = procfs.read_identity(identity.pid)
            if not identity.same(current):
                raise ProcessError('PID %d changed identity between checks (was %r, now %r): nothing signalled'
                                   % (identity.pid, identity, current))
            report = stopping.stop_processes(members, signum, p['timeout'], p['escalate'], p['kill_timeout'], p['children'],
                                             signals=self.result['signals'])
        self.result.update(dict((k, report[k]) for k in ('stop_duration', 'rss_freed_bytes', 'pids') if k in report))
        self.result['outcome'] = report['outcome']
        self.result['changed'] = bool(self.result['signals']) or report['outcome'] != 'already_stopped'
        report['signals'] = self.result['signals']
        if ports:
            self.result['port_released'] = sockets.wait_port_released(ports, p['port_release_timeout'])
        if report.get('survivors'):
            last = report['signals'][-1]['signal'] if report['signals'] else stopping.signal_name(signum)
            self.result['outcome'] = None
            self.result['survivors'] = report['survivors']
            self.fail('still running after %s: %s (escalate=%s); stop them by hand or rerun with escalate=true'
                      % (last, ', '.join('PID %d (%s)' % (s['pid'], s['exe']) for s in report['survivors']), p['escalate']))
        if ports and not self.result['port_released']:
            self.module.warn('port(s) %s still have a listener after the stop' % ports)
        if self.result['outcome'] != 'already_stopped':
            self.write_record(self.result['outcome'])
        self.module.exit_json(**self.result)


UNIT_NAME = re.compile(r'[A-Za-z0-9:_.@\\-]+')
MAX_NAME_LENGTH = 4096


def validate(params: dict) -> str | None:
    """Check every option before anything is read or signalled; normalise exe.  Returns the first problem, or None."""
    try:
        for key in ('timeout', 'kill_timeout', 'drain_timeout', 'port_release_timeout'):
            params[key] = bounds.check_duration(params[key], key)
        if params['pid'] is not None:
            bounds.check_pid(params['pid'], 'pid')
        if params['port'] is not None:
            bounds.check_port(params['port'], 'port')
        for port in params['drain_ports'] or []:
            bounds.check_port(port, 'each of drain_ports')
        for key in ('pidfile', 'systemd_unit', 'exe', 'name', 'cmdline_pattern', 'signal', 'diagnostics_dir'):
            value = params[key]
            if value is not None and (not value or '\0' in value or len(value) > MAX_NAME_LENGTH):
                raise ProcessError('%s must be a non-empty string of at most %d characters without NUL bytes, got %r'
                                   % (key, MAX_NAME_LENGTH, value[:200]))
        stopping.signal_number(params['signal'])
        if params['cmdline_pattern'] is not None:
            bounds.compile_pattern(params['cmdline_pattern'])
        unit = params['systemd_unit']
        if unit is not None and (len(unit) > 256 or not UNIT_NAME.fullmatch(unit) or unit.startswith('-')):
            raise ProcessError('systemd_unit must be one unit name such as anqicms-site1.service (letters, digits and '
                               ':_.@\\-, at most 256 characters; no glob patterns), got %r' % unit[:300])
        for key in ('pidfile', 'diagnostics_dir'):
            if params[key] is not None and not os.path.isabs(params[key]):
                raise ProcessError('%s must be an absolute path, got %r' % (key, params[key]))
        if params['exe'] is not None:
            if not os.path.isabs(params['exe']):
                raise ProcessError('exe must be an absolute path (compared with /proc/PID/exe), got %r' % params['exe'])
            # /proc/PID/exe holds the resolved path: compare with the resolved path (symlinks, "..").
            params['exe'] = paths.resolve(params['exe'], 'exe', ProcessError)
        diag = params['diagnostics_dir']
        if diag is not None and os.path.lexists(diag) and not os.path.isdir(diag):
            raise ProcessError('diagnostics_dir %s exists and is not a directory' % diag)
        problems = record.option_problems(params)
        if problems:
            raise ProcessError(problems[0])
    except ProcessError as e:
        return str(e)
    return None


def main() -> None:
    module = new_module(
        dict(
            pid=dict(type='int'),
            pidfile=dict(type='path'),
            port=dict(type='int'),
            systemd_unit=dict(type='str'),
            exe=dict(type='path'),
            name=dict(type='str'),
            cmdline_pattern=dict(type='str'),
            signal=dict(type='str', default='SIGTERM'),
            children=dict(type='bool', default=True),
            timeout=dict(type='float', default=30),
            escalate=dict(type='bool', default=True),
            kill_timeout=dict(type='float', default=10),
            drain=dict(type='bool', default=False),
            drain_timeout=dict(type='float', default=30),
            drain_ports=dict(type='list', elements='int'),
            port_release_timeout=dict(type='float', default=5),
            diagnostics_dir=dict(type='path'),
            record=dict(type='bool', default=True),
            notify_url=dict(type='str', no_log=True),
            record_instance=dict(type='str'),
            record_reason=dict(type='str', default=''),
        ),
        'graceful_stop',
        mutually_exclusive=[('pid', 'pidfile', 'port', 'systemd_unit')],
        required_one_of=[('pid', 'pidfile', 'port', 'systemd_unit', 'exe')],
        supports_check_mode=True,
    )
    if not HAS_PROCESS_UTILS:
        module.fail_json(msg='cannot import opsguard.anqicms process utilities', exception=PROCESS_UTILS_ERROR)
    problem = validate(module.params)
    if problem:
        module.fail_json(msg='%s: invalid option value: %s; nothing signalled' % (_hostname(), problem), changed=False)
    if module.params['systemd_unit'] and module.params['signal'] not in ('SIGTERM', 'TERM', '15'):
        module.warn('signal is not used with systemd_unit: the unit\'s KillSignal= applies')
    Stopper(module).run()


if __name__ == '__main__':
    main()
