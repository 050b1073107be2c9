# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stopping a proven process tree: signals through a pidfd, waiting, escalation to SIGKILL, and the systemd path.

Every process is pinned (a pidfd where the kernel offers one) and its identity proven again before each signal, so
a reused PID is never hit. A unit is stopped through systemd (``systemctl stop``) so that its restart logic and
state stay consistent; the ``systemctl`` runner is given to :class:`Systemd`, so the whole path runs in tests
without systemd.
"""

from __future__ import annotations

import errno
import os
import re
import select
import signal as _signal
import time

from ansible_collections.opsguard.anqicms.plugins.module_utils import bounds, procfs, targets
from ansible_collections.opsguard.anqicms.plugins.module_utils.procfs import PROC, ProcessError

UNIT_PROPERTIES = ('Id', 'LoadState', 'ActiveState', 'SubState', 'MainPID', 'Restart', 'KillSignal', 'KillMode', 'TimeoutStopUSec',
                   'ControlGroup', 'Result', 'ExecMainCode', 'ExecMainStatus')
CGROUP_ROOTS = ('/sys/fs/cgroup/systemd', '/sys/fs/cgroup/unified', '/sys/fs/cgroup')
STOPPED_STATES = ('inactive', 'failed')


# ---------------------------------------------------------------- signals


def signal_number(value) -> int:
    """SIGTERM / TERM / 15 -> 15."""
    text = str(value).strip().upper()
    if bounds.ASCII_DIGITS.fullmatch(text):
        number = int(text) if len(text) <= 4 else 0
        if 0 < number < _signal.NSIG:
            return number
    else:
        if not text.startswith('SIG'):
            text = 'SIG' + text
        number = getattr(_signal, text, None)
        if isinstance(number, int) and number > 0 and not text.startswith('SIG_'):
            return int(number)
    raise ProcessError('unknown signal %r; expected a name like SIGTERM or a number' % (value,))


def signal_name(number: int) -> str:
    try:
        return _signal.Signals(number).name
    except ValueError:
        return str(number)


class Tracked(object):
    """A proven process, pinned by a pidfd where available."""

    def __init__(self, ident: procfs.Identity, proc: str = PROC, use_pidfd: bool = True) -> None:
        self.ident = ident
        self.proc = proc
        self.pidfd = None
        self.rss = procfs.rss_bytes(ident.pid, proc)
        self.gone = False
        if use_pidfd and hasattr(os, 'pidfd_open') and proc == PROC:
            try:
                self.pidfd = os.pidfd_open(ident.pid)
            except (IOError, OSError) as e:
                if e.errno == errno.ESRCH:
                    self.gone = True
                    return
                self.pidfd = None
        # Proof after pinning: the pidfd now denotes whatever holds the PID; it must be the proven process.
        if not self.proven():
            self.gone = True
            self.close()

    def proven(self) -> bool:
        current = procfs.read_identity(self.ident.pid, self.proc)
        return self.ident.same(current)

    def alive(self) -> bool:
        if self.gone:
            return False
        if self.pidfd is not None:
            ready = select.select([self.pidfd], [], [], 0)[0]
            if ready:
                self.gone = True
                self.close()
                return False
            return True
        if not self.proven():
            self.gone = True
        return not self.gone

    def send(self, signum: int) -> str | None:
        """Send signum after re-proving identity; return the method used or None when the process is gone."""
        if not self.alive():
            return None
        if not self.proven():
            if self.pidfd is not None and self.alive():
                raise ProcessError('PID %d changed identity (now %r, was %r): not signalled'
                                   % (self.ident.pid, procfs.read_identity(self.ident.pid, self.proc), self.ident))
            self.gone = True
            return None
        try:
            if self.pidfd is not None:
                _signal.pidfd_send_signal(self.pidfd, signum)
                return 'pidfd'
            os.kill(self.ident.pid, signum)
            return 'kill'
        except (IOError, OSError) as e:
            if e.errno == errno.ESRCH:
                self.gone = True
                return None
            raise ProcessError('cannot send %s to PID %d: %s' % (signal_name(signum), self.ident.pid, e))

    def close(self) -> None:
        if self.pidfd is not None:
            try:
                os.close(self.pidfd)
            except OSError:
                pass
            self.pidfd = None


def wait_gone(tracked: list, timeout: float, interval: float = 0.02) -> list:
    """Wait until every tracked process has exited or timeout passes; return the ones still alive.

    timeout must be finite and within 0 .. MAX_WAIT_SECONDS (ProcessError otherwise, before any wait); one
    select() never waits more than 1 s, so no value can overflow the kernel's time type.
    """
    deadline = time.monotonic() + bounds.check_duration(timeout, 'timeout')
    while True:
        alive = [t for t in tracked if t.alive()]
        remaining = deadline - time.monotonic()
        if not alive or remaining <= 0:
            return alive
        fds = [t.pidfd for t in alive if t.pidfd is not None]
        if fds and len(fds) == len(alive):
            select.select(fds, [], [], min(remaining, 1.0))
        else:
            time.sleep(min(interval, remaining))


def stop_processes(members: list, signum: int, timeout: float, escalate: bool, kill_timeout: float = 5.0,
                   with_children: bool = True, proc: str = PROC, use_pidfd: bool = True, signals: list | None = None) -> dict:
    """Signal a proven tree (root first), wait, escalate to SIGKILL; report what happened.

    members: identities (root first) taken before the first signal.  Every one is pinned and re-proven
    before each signal; one that no longer proves is treated as gone and never signalled.
    timeout and kill_timeout are checked before anything is signalled (ProcessError).
    signals: a list the caller owns, filled as each signal is sent, so that what was done is known even when
    an exception ends the stop half-way.
    """
    bounds.check_duration(timeout, 'timeout')
    bounds.check_duration(kill_timeout, 'kill_timeout')
    signum = signal_number(signum)
    started = time.monotonic()
    tracked = [Tracked(m, proc, use_pidfd) for m in members]
    rss_before = sum(t.rss for t in tracked if not t.gone)
    if signals is None:
        signals = []

    def send_all(items: list, signum_: int) -> None:
        for item in items:
            how = item.send(signum_)
            if how:
                signals.append({'pid': item.ident.pid, 'signal': signal_name(signum_), 'time': round(time.time(), 3),
                                'elapsed': round(time.monotonic() - started, 3), 'via': how})

    try:
        root = tracked[0]
        if root.gone:
            return {'outcome': 'already_stopped', 'signals': signals, 'stop_duration': 0.0,
                    'rss_freed_bytes': 0, 'survivors': [], 'pids': [m.pid for m in members]}
        send_all([root] + (tracked[1:] if with_children else []), signum)
        survivors = wait_gone(tracked, timeout)
        forced = False
        if survivors and escalate:
            if with_children:
                # Children born during shutdown of a still-proven parent are part of the tree too.
                known = set(t.ident.pid for t in tracked)
                for parent in list(survivors):
                    for child in procfs.snapshot_tree(parent.ident, True, proc)[1:]:
                        if child.pid not in known and parent.proven():
                            extra = Tracked(child, proc, use_pidfd)
                            tracked.append(extra)
                            known.add(child.pid)
                            if not extra.gone:
                                survivors.append(extra)
            forced = True
            send_all(survivors, _signal.SIGKILL)
            survivors = wait_gone(survivors, kill_timeout)
        freed = sum(t.rss for t in tracked if t.gone or not t.alive())
        return {
            'outcome': 'stopped_forced' if forced else 'stopped_gracefully',
            'signals': signals,
            'stop_duration': round(time.monotonic() - started, 3),
            'rss_before_bytes': rss_before,
            'rss_freed_bytes': freed,
            'survivors': [t.ident.as_dict(proc) for t in survivors],
            'pids': [t.ident.pid for t in tracked],
        }
    finally:
        for t in tracked:
            t.close()


# ---------------------------------------------------------------- systemd


class Systemd(object):
    """A unit stopped through systemd.  ``systemctl(args) -> (rc, stdout, stderr)`` runs ``systemctl *args``."""

    def __init__(self, systemctl, proc: str = PROC, cgroup_roots: tuple = CGROUP_ROOTS, poll: float = 0.1) -> None:
        self.systemctl = systemctl
        self.proc = proc
        self.cgroup_roots = cgroup_roots
        self.poll = poll

    def run(self, *args: str, check: bool = True) -> tuple:
        rc, out, err = self.systemctl(list(args))
        if check and rc != 0:
            raise ProcessError('systemctl %s failed (rc=%d): %s' % (' '.join(args), rc, (err or out).strip()))
        return rc, out, err

    def show(self, unit: str) -> dict:
        """The unit's properties (UNIT_PROPERTIES) as strings."""
        dummy_rc, out, dummy_err = self.run('show', '--property=' + ','.join(UNIT_PROPERTIES), '--', unit)
        info = {}
        for line in out.splitlines():
            if '=' in line:
                key, value = line.split('=', 1)
                info[key] = value
        return info

    def restart_of(self, unit: str) -> str | None:
        """The unit's Restart= setting, or None when systemctl cannot tell."""
        rc, out, dummy_err = self.run('show', '--property=Restart', '--value', '--', unit, check=False)
        return out.strip() if rc == 0 else None

    def cgroup_pids(self, cgroup: str) -> list:
        """PIDs in the unit's control group (the first hierarchy that lists any)."""
        found: list = []
        if not cgroup:
            return found
        for base in self.cgroup_roots:
            path = base + cgroup + '/cgroup.procs'
            if os.path.isfile(path):
                try:
                    found = [int(x) for x in procfs.read(path).split()]
                except (IOError, OSError, ValueError):
                    continue
                if found:
                    return found
        return found

    def resolve(self, unit_name: str, exe: str | None = None, name: str | None = None, cmdline_pattern: str | None = None,
                restart_wait: float = 0.0) -> dict:
        """The unit, its main process proven against the constraints, and the processes of its cgroup.

        Returns {'unit': properties, 'identity': Identity or None when the unit is stopped, 'members': identities
        (main process first) or None, 'target': a sentence}; ProcessError when it cannot be used or proven.

        A unit whose process ended (the kernel's OOM kill) and which systemd is about to start again (SubState
        ``auto-restart``, no main PID) has nothing to stop yet: up to ``restart_wait`` seconds are given to systemd's
        restart, and the process it starts is then proven and stopped like any other. Nothing is ever done to the
        unit before a main process is proven (a ``systemctl stop`` now could meet a process started a moment later).
        """
        unit = self.show(unit_name)
        waited = None
        if unit.get('SubState') == 'auto-restart' and restart_wait > 0:
            started = time.monotonic()
            while (unit.get('SubState') == 'auto-restart' or unit.get('MainPID') in ('', '0')) \
                    and unit.get('ActiveState') not in STOPPED_STATES and time.monotonic() - started < restart_wait:
                time.sleep(0.2)
                unit = self.show(unit_name)
            waited = round(time.monotonic() - started, 1)
        name_ = unit.get('Id') or unit_name
        load_state = unit.get('LoadState')
        if load_state != 'loaded' and not (load_state == 'masked' and unit.get('ActiveState') in STOPPED_STATES):
            raise ProcessError('systemd unit %s cannot be used (LoadState=%s); expected an installed unit name such as '
                               'mariadb.service' % (unit_name, load_state))
        if unit.get('ActiveState') in STOPPED_STATES:
            return {'unit': unit, 'identity': None, 'members': None,
                    'target': 'systemd unit %s is %s' % (name_, unit.get('ActiveState'))}
        main_pid_text = unit.get('MainPID') or ''
        main_pid = int(main_pid_text) if re.fullmatch(r'[0-9]{1,8}', main_pid_text) else 0
        if main_pid <= 0:
            if unit.get('SubState') == 'auto-restart':
                raise ProcessError('systemd unit %s is waiting to restart after its process ended (SubState=auto-restart) '
                                   'and has no main PID%s; nothing stopped. Stop it with systemctl, or run again once it '
                                   'has restarted.' % (name_, ' after %s s' % waited if waited is not None else ''))
            raise ProcessError('systemd unit %s is %s but has no main PID; nothing stopped. Stop it with systemctl.'
                               % (name_, unit.get('ActiveState')))
        ident = procfs.read_identity(main_pid, self.proc, need_tgid=True)
        if ident is None:
            raise ProcessError('systemd unit %s reports main PID %d, which does not exist here (another PID namespace?)'
                               % (name_, main_pid))
        problems = targets.check_constraints(ident, procfs.read_cmdline(main_pid, self.proc), exe, name, cmdline_pattern)
        if problems:
            raise ProcessError('main PID %d of systemd unit %s does not match: %s; nothing stopped' % (main_pid, name_, '; '.join(problems)))
        members = [ident]
        cgroup_pids = self.cgroup_pids(unit.get('ControlGroup', ''))
        for pid in cgroup_pids:
            if pid != main_pid:
                other = procfs.read_identity(pid, self.proc)
                if other is not None:
                    members.append(other)
        if not cgroup_pids:
            members = procfs.snapshot_tree(ident, True, self.proc)
        restarted = ' after systemd restarted it (waited %s s: its previous process had ended)' % waited if waited is not None else ''
        return {'unit': unit, 'identity': ident, 'members': members,
                'target': 'systemd unit %s (%s) has main PID %d (%s)%s' % (name_, unit.get('ActiveState'), main_pid,
                                                                           procfs.strip_deleted(ident.exe), restarted)}

    def stop(self, identity: procfs.Identity, members: list, unit: dict, timeout: float, escalate: bool, kill_timeout: float,
             signals: list) -> dict:
        """``systemctl stop``, wait up to timeout, ``systemctl kill --signal=SIGKILL`` when escalate; report like stop_processes.

        signals (the caller's list) gets one entry per systemctl action as it is taken; the report's ``unit_after`` holds
        the unit's properties after the stop.
        """
        name = unit['Id']
        started = time.monotonic()
        tracked = [Tracked(m, self.proc) for m in members]
        rss_before = sum(t.rss for t in tracked if not t.gone)
        try:
            again = self.show(name)
            if again.get('MainPID') != unit.get('MainPID') or not tracked[0].proven():
                raise ProcessError('systemd unit %s changed its main PID (%s -> %s) between checks: nothing stopped'
                                   % (name, unit.get('MainPID'), again.get('MainPID')))
            kill_signal = signal_name(int(unit['KillSignal'])) if (unit.get('KillSignal') or '').isdigit() \
                else unit.get('KillSignal') or 'SIGTERM'
            self.run('stop', '--no-block', '--', name)
            signals.append({'pid': identity.pid, 'signal': kill_signal, 'time': round(time.time(), 3), 'elapsed': 0.0, 'via': 'systemd'})
            survivors = wait_gone(tracked, timeout)
            forced = False
            if survivors:
                if not escalate:
                    return {'outcome': None, 'signals': signals, 'survivors': [s.ident.as_dict(self.proc) for s in survivors],
                            'stop_duration': round(time.monotonic() - started, 3), 'rss_freed_bytes': 0}
                forced = True
                self.run('kill', '--signal=SIGKILL', '--', name)
                signals.append({'pid': identity.pid, 'signal': 'SIGKILL', 'time': round(time.time(), 3),
                                'elapsed': round(time.monotonic() - started, 3), 'via': 'systemd'})
                survivors = wait_gone(survivors, kill_timeout)
            duration = round(time.monotonic() - started, 3)
            # systemd itself may have escalated (TimeoutStopSec= shorter than our timeout).
            deadline = time.monotonic() + max(kill_timeout, 1.0)
            after = self.show(name)
            while after.get('ActiveState') not in STOPPED_STATES and time.monotonic() < deadline:
                time.sleep(self.poll)
                after = self.show(name)
            if after.get('Result') == 'timeout' or (after.get('ExecMainCode') == '2' and after.get('ExecMainStatus') == '9'):
                forced = True
            freed = sum(t.rss for t in tracked if not t.alive())
            return {'outcome': 'stopped_forced' if forced else 'stopped_gracefully', 'signals': signals, 'stop_duration': duration,
                    'rss_before_bytes': rss_before, 'rss_freed_bytes': freed, 'unit_after': after,
                    'survivors': [s.ident.as_dict(self.proc) for s in survivors], 'pids': [t.ident.pid for t in tracked]}
        finally:
            for t in tracked:
                t.close()
