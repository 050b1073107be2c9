# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""TCP sockets of a process (plugins/module_utils/sockets.py): /proc/net/tcp{,6} fixtures, netlink, draining and port release."""

from __future__ import annotations

import signal
import socket

from ansible_collections.opsguard.anqicms.plugins.module_utils import procfs, sockets, stopping
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.process_helpers import (
    LISTENER,
    read_fixture,
    ready_process,
    wait_for,
)


class TestParsing:
    def test_net_tcp6_addresses(self):
        entries = sockets.parse_net_tcp(read_fixture('net_tcp6'))
        listen = [e for e in entries if e['state'] == sockets.TCP_LISTEN]
        assert [(e['local'], e['local_port'], e['inode']) for e in listen] == [('::', 18555, 19240)]
        locals_ = sorted(e['local'] for e in entries if e['state'] == sockets.TCP_ESTABLISHED and e['local_port'] == 18555)
        assert locals_ == ['127.0.0.1', '::1']

    def test_net_tcp4_addresses(self):
        entries = sockets.parse_net_tcp(read_fixture('net_tcp'))
        assert sockets.listener_inodes(entries, 18556) == {19241}
        assert entries[0]['local'] == '127.0.0.1'

    def test_client_connections_count_server_side_only(self):
        entries = sockets.parse_net_tcp(read_fixture('net_tcp')) + sockets.parse_net_tcp(read_fixture('net_tcp6'))
        assert sorted(e['inode'] for e in sockets.client_connections(entries, [18555])) == [19243, 19247]
        assert [e['inode'] for e in sockets.client_connections(entries, [18556])] == [19245]
        assert sockets.client_connections(entries, [18557]) == []
        # Restricted to the owner's sockets: a foreign socket on the port is left out.
        assert [e['inode'] for e in sockets.client_connections(entries, [18555], {19243})] == [19243]

    def test_listening_ports(self):
        entries = sockets.parse_net_tcp(read_fixture('net_tcp')) + sockets.parse_net_tcp(read_fixture('net_tcp6'))
        assert sockets.listening_ports(entries, {19240, 19241, 19243}) == [18555, 18556]
        assert sockets.listening_ports(entries, {19243}) == []


def test_drain_counts_established_connections(procs):
    proc = ready_process(procs, LISTENER)
    port = sockets.listening_ports(sockets.read_tcp(proc.pid), sockets.socket_inodes(proc.pid))[0]
    clients = [socket.create_connection(('127.0.0.1', port)) for dummy in range(2)]
    try:
        wait_for(lambda: len(sockets.client_connections(sockets.read_tcp(proc.pid), [port])) == 2)
        report = sockets.wait_drained(proc.pid, [port], 0.3, interval=0.05)
        assert report['connections_at_start'] == 2 and report['connections_left'] == 2 and report['timed_out']
    finally:
        for c in clients:
            c.close()
    report = sockets.wait_drained(proc.pid, [port], 5, interval=0.05)
    assert report['connections_left'] == 0 and not report['timed_out']


def test_port_released_after_stop(procs):
    proc = ready_process(procs, LISTENER)
    port = sockets.listening_ports(sockets.read_tcp(proc.pid), sockets.socket_inodes(proc.pid))[0]
    assert not sockets.wait_port_released([port], 0)
    stopping.stop_processes([procfs.read_identity(proc.pid)], signal.SIGTERM, 5, True)
    proc.wait(timeout=5)
    assert sockets.wait_port_released([port], 2)


def test_netlink_and_proc_tables_agree(procs):
    proc = ready_process(procs, LISTENER)
    inodes = sockets.socket_inodes(proc.pid)
    port = sockets.listening_ports(sockets.read_tcp(proc.pid), inodes)[0]
    client = socket.create_connection(('127.0.0.1', port))
    try:
        wait_for(lambda: sockets.client_connections(sockets.read_tcp(proc.pid, state=sockets.TCP_ESTABLISHED, ports={port}), [port]))
        for state in (sockets.TCP_LISTEN, sockets.TCP_ESTABLISHED):
            via_netlink = sorted((e['local'], e['local_port'], e['state'], e['inode']) for e in sockets.tcp_table(state, proc.pid, {port}))
            via_proc = sorted((e['local'], e['local_port'], e['state'], e['inode']) for e in sockets.read_tcp(proc.pid, state=state, ports={port}))
            assert via_netlink == via_proc and via_netlink
    finally:
        client.close()


def test_drain_counts_connections_not_yet_accepted(procs):
    proc = ready_process(procs, '''
        import socket, time
        s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(16)
        print('READY', flush=True)
        time.sleep(60)
    ''')
    port = sockets.listening_ports(sockets.read_tcp(proc.pid), sockets.socket_inodes(proc.pid))[0]
    client = socket.create_connection(('127.0.0.1', port))
    try:
        report = sockets.wait_drained(proc.pid, [port], 0.2, interval=0.05)
        assert report['connections_at_start'] == 1 and report['connections_left'] == 1
    finally:
        client.close()
