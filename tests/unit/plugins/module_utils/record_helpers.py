# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fake journald (a real unix datagram socket read back with the native protocol) and a real local HTTP receiver
whose answers a test scripts, for the tests of action records."""
from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import tempfile
import threading
import time

from ansible_collections.opsguard.anqicms.plugins.module_utils import record


class FakeJournal(object):
    """A unix datagram socket bound where the module sends its entries; ``entries()`` parses what arrived."""

    def __init__(self) -> None:
        # A short directory: unix socket paths are limited to 107 bytes.
        self.dir = tempfile.mkdtemp(prefix='ogj-', dir='/tmp')
        self.path = os.path.join(self.dir, 'socket')
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)

    def datagrams(self) -> list:
        out = []
        while True:
            try:
                out.append(self.sock.recv(1 << 20))
            except BlockingIOError:
                return out

    def entries(self) -> list:
        """Every entry received so far, each a dict NAME -> value (str; bytes when not UTF-8)."""
        result = []
        for data in self.datagrams():
            entry = {}
            for name, value in record.parse(data):
                assert name not in entry, 'field %s sent twice' % name
                try:
                    entry[name] = value.decode('utf-8')
                except UnicodeDecodeError:
                    entry[name] = value
            result.append(entry)
        return result

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Receiver(object):
    """A threaded HTTP server on 127.0.0.1. ``answers`` is the list of answers to give in turn (an HTTP status, or
    ('sleep', seconds) to hold the request, or ('redirect', location)); the last one repeats. Every request is kept:
    (time, path, body as parsed JSON)."""

    def __init__(self, answers=(200,)) -> None:
        self.answers = list(answers)
        self.requests: list = []
        lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # pylint: disable=invalid-name
                body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
                with lock:
                    outer.requests.append((time.monotonic(), self.path, json.loads(body), dict(self.headers)))
                    answer = outer.answers[min(len(outer.requests) - 1, len(outer.answers) - 1)]
                if isinstance(answer, tuple) and answer[0] == 'sleep':
                    time.sleep(answer[1])
                    answer = 200
                if isinstance(answer, tuple) and answer[0] == 'redirect':
                    self.send_response(302)
                    self.send_header('Location', answer[1])
                    self.send_header('Content-Length', '0')
                    self.end_headers()
                    return
                self.send_response(answer)
                self.send_header('Content-Length', '2')
                self.end_headers()
                self.wfile.write(b'{}')

            def log_message(self, format, *args):  # pylint: disable=redefined-builtin
                del format, args

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = '/hook') -> str:
        return 'http://127.0.0.1:%d%s' % (self.port, path)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]
