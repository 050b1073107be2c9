# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Webhook receivers on the test fleet's bridge address, for the action records the hosts POST.

``Receiver`` answers every POST with 200 and keeps (path, JSON body); ``BlackHole`` accepts TCP connections and never
answers (a receiver that hangs). Import as ``ansible_collections.opsguard.anqicms.tests.utils.webhook_receiver``.
"""
from __future__ import annotations

import http.server
import json
import socket
import threading
from typing import Any


class Receiver:
    """A threaded HTTP server on ``address`` (port chosen by the kernel) that keeps every POST."""

    def __init__(self, address: str) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        lock = threading.Lock()
        posts = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # pylint: disable=invalid-name
                body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
                with lock:
                    posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header('Content-Length', '0')
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
                del format, args

        self.httpd = http.server.ThreadingHTTPServer((address, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name='webhook-receiver', daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        """The URL a fleet host reaches this receiver at (``control`` is the bridge address in every host's /etc/hosts)."""
        return f'http://control:{self.port}{path}'

    def records(self) -> list[dict[str, Any]]:
        """The ``record`` of every body received, in order."""
        return [body['record'] for dummy, body in list(self.posts)]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=30)


class BlackHole:
    """A listening TCP socket that never accepts: connections complete in the kernel and then hear nothing."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket()
        self.sock.bind((address, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def url(self, path: str) -> str:
        return f'http://control:{self.port}{path}'

    def close(self) -> None:
        self.sock.close()
