# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TCP sockets of a process: listening ports, client connections, draining and port release.

The TCP table comes from NETLINK_SOCK_DIAG when the process shares the caller's network namespace (the kernel
filters by state, so a busy host's table stays cheap), otherwise from /proc/PID/net/tcp{,6}. A socket belongs to
a process when its inode is one of the process's file descriptors (/proc/PID/fd).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time

from ansible_collections.opsguard.anqicms.plugins.module_utils import bounds, procfs
from ansible_collections.opsguard.anqicms.plugins.module_utils.procfs import PROC, ProcessError

TCP_ESTABLISHED = 1
TCP_LISTEN = 10
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
ALL_TCP_STATES = 0xfff


def _hex_to_ip(hexaddr: str) -> str:
    """Address field of /proc/net/tcp{,6}: 32-bit words in host (little-endian) byte order."""
    raw = b''.join(bytes.fromhex(hexaddr[i:i + 8])[::-1] for i in range(0, len(hexaddr), 8))
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if raw[:12] == b'\0' * 10 + b'\xff\xff':
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return socket.inet_ntop(socket.AF_INET6, raw)


def parse_net_tcp(text: str, state: int | None = None, ports: set | None = None, addresses: bool = True) -> list:
    """Parse /proc/net/tcp or tcp6 into dicts (local, local_port, remote, remote_port, state, inode).

    state / ports filter before anything else is decoded; addresses=False skips decoding the IP addresses
    (the dicts then hold the raw hex), which keeps a scan of a busy host's table cheap.
    """
    entries = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10:
            continue
        st = int(parts[3], 16)
        if state is not None and st != state:
            continue
        local, remote = parts[1], parts[2]
        lport = int(local[-4:], 16)
        if ports is not None and lport not in ports:
            continue
        entries.append({
            'local': _hex_to_ip(local[:-5]) if addresses else local[:-5],
            'local_port': lport,
            'remote': _hex_to_ip(remote[:-5]) if addresses else remote[:-5],
            'remote_port': int(remote[-4:], 16),
            'state': st,
            'inode': int(parts[9]),
        })
    return entries


def read_tcp(pid: int | None = None, proc: str = PROC, state: int | None = None, ports: set | None = None,
             addresses: bool = True) -> list:
    """TCP sockets of the network namespace of pid (or of the caller), optionally filtered (see parse_net_tcp)."""
    base = os.path.join(proc, str(pid), 'net') if pid else os.path.join(proc, 'net')
    entries = []
    for name in ('tcp', 'tcp6'):
        try:
            entries.extend(parse_net_tcp(procfs.read(os.path.join(base, name)), state, ports, addresses))
        except (IOError, OSError) as e:
            if e.errno not in (errno.ENOENT, errno.ESRCH):
                raise ProcessError('cannot read %s/%s: %s' % (base, name, e))
    return entries


def _diag_dump(family: int, states: int) -> list:
    """TCP sockets of the caller's network namespace through NETLINK_SOCK_DIAG (filtered by state in the kernel)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
    try:
        sock.settimeout(5)
        request = struct.pack('=BBBBI', family, socket.IPPROTO_TCP, 0, 0, states) + b'\0' * 48
        sock.sendto(struct.pack('=IHHII', 16 + len(request), SOCK_DIAG_BY_FAMILY, 0x301, 1, 0) + request, (0, 0))
        entries = []
        size = 4 if family == socket.AF_INET else 16
        for dummy in range(100000):
            data = sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from('=IH', data, offset)
                if kind == 3:  # NLMSG_DONE
                    return entries
                if kind == 2:  # NLMSG_ERROR
                    code = -struct.unpack_from('=i', data, offset + 16)[0]
                    raise OSError(code, os.strerror(code))
                body = offset + 16
                state = data[body + 1]
                sport, dport = struct.unpack_from('>HH', data, body + 4)
                entries.append({
                    'local': socket.inet_ntop(family, data[body + 8:body + 8 + size]),
                    'local_port': sport,
                    'remote': socket.inet_ntop(family, data[body + 24:body + 24 + size]),
                    'remote_port': dport,
                    'state': state,
                    'inode': struct.unpack_from('=I', data, body + 68)[0],
                })
                offset += (length + 3) & ~3
        return entries
    finally:
        sock.close()


def _same_netns(pid: int | None, proc: str = PROC) -> bool:
    if pid is None:
        return True
    try:
        return os.readlink(os.path.join(proc, 'self', 'ns', 'net')) == os.readlink(os.path.join(proc, str(pid), 'ns', 'net'))
    except (IOError, OSError):
        return False


def tcp_table(state: int | None = None, pid: int | None = None, ports: set | None = None, proc: str = PROC) -> list:
    """TCP sockets in one state (or all) of pid's network namespace (the caller's when pid is None).

    Uses NETLINK_SOCK_DIAG when that namespace is the caller's (cheap: the kernel filters by state); falls back to
    /proc/PID/net/tcp{,6} otherwise or when netlink is refused.
    """
    if proc == PROC and _same_netns(pid, proc):
        try:
            mask = ALL_TCP_STATES if state is None else 1 << state
            entries = _diag_dump(socket.AF_INET, mask) + _diag_dump(socket.AF_INET6, mask)
            if ports is not None:
                entries = [e for e in entries if e['local_port'] in ports]
            return entries
        except (IOError, OSError):
            pass
    return read_tcp(pid, proc, state, ports)


def socket_inodes(pid: int, proc: str = PROC) -> set:
    """Inodes of the sockets pid holds open (its /proc/PID/fd links ``socket:[INODE]``)."""
    fd_dir = os.path.join(proc, str(pid), 'fd')
    inodes = set()
    try:
        fds = os.listdir(fd_dir)
    except (IOError, OSError):
        return inodes
    for fd in fds:
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except (IOError, OSError):
            continue
        if target.startswith('socket:['):
            inodes.add(int(target[8:-1]))
    return inodes


def listening_ports(entries: list, inodes: set) -> list:
    return sorted(set(e['local_port'] for e in entries if e['state'] == TCP_LISTEN and e['inode'] in inodes))


def listener_inodes(entries: list, port: int) -> set:
    return set(e['inode'] for e in entries if e['state'] == TCP_LISTEN and e['local_port'] == port and e['inode'])


def owners_of(inodes: set, table: dict, proc: str = PROC) -> list:
    """PIDs holding any of the socket inodes."""
    if not inodes:
        return []
    return sorted(pid for pid in table if socket_inodes(pid, proc) & inodes)


def client_connections(entries: list, ports: list, inodes: set | None = None) -> list:
    """Established connections accepted on one of the ports (owned by inodes when given, or not yet accepted)."""
    wanted = set(ports)
    found = []
    for e in entries:
        if e['state'] != TCP_ESTABLISHED or e['local_port'] not in wanted:
            continue
        if inodes is not None and e['inode'] and e['inode'] not in inodes:
            continue
        found.append(e)
    return found


def port_listening(port: int, pid_for_netns: int | None = None, proc: str = PROC) -> bool:
    return bool(tcp_table(TCP_LISTEN, pid_for_netns, {port}, proc))


def wait_drained(pid: int, ports: list, timeout: float, interval: float = 0.1, proc: str = PROC, members: list | None = None) -> dict:
    """Wait until no established client connection remains on ports (or timeout passes); report counts.

    Reads the TCP table of the target's network namespace; a connection counts when its local port is one of
    the ports and it belongs to the target tree (a socket inode of pid or of members), or is still in the accept
    queue (no inode yet).
    """
    started = time.monotonic()
    deadline = started + bounds.check_duration(timeout, 'drain_timeout')
    first = None
    owners = [pid] + [m for m in (members or []) if m != pid]
    while True:
        inodes = set()
        for owner in owners:
            inodes |= socket_inodes(owner, proc)
        count = len(client_connections(tcp_table(TCP_ESTABLISHED, pid, set(ports), proc), ports, inodes))
        if first is None:
            first = count
        remaining = deadline - time.monotonic()
        if count == 0 or remaining <= 0:
            return {'enabled': True, 'ports': list(ports), 'connections_at_start': first, 'connections_left': count,
                    'duration': round(time.monotonic() - started, 3), 'timed_out': count > 0}
        time.sleep(min(interval, remaining))


def wait_port_released(ports: list, timeout: float, interval: float = 0.05, proc: str = PROC) -> bool:
    """True once none of the ports has a listener in the caller's network namespace (bounded by timeout)."""
    deadline = time.monotonic() + bounds.check_duration(timeout, 'port_release_timeout')
    while True:
        if not tcp_table(TCP_LISTEN, None, set(ports), proc):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval, remaining))
