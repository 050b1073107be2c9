"""A small HTTP server that stops like AnQiCMS: it exits at once on SIGTERM, cutting in-flight requests.

Options make it ignore SIGTERM, take a while to exit, drain before exiting, or start child processes.
GET /sleep?seconds=N answers after N seconds (a slow in-flight request).
"""
from __future__ import annotations

import argparse
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.0'

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == '/sleep':
            time.sleep(float(query.get('seconds', ['1'])[0]))
            body = b'slept\n'
        else:
            body = ('ok %d\n' % os.getpid()).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # pylint: disable=redefined-builtin
        return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--address', default='127.0.0.1')
    parser.add_argument('--ignore-term', action='store_true')
    parser.add_argument('--exit-delay-ms', type=int, default=0)
    parser.add_argument('--graceful', action='store_true')
    parser.add_argument('--children', type=int, default=0)
    parser.add_argument('--children-ignore-term', action='store_true')
    parser.add_argument('--pidfile')
    parser.add_argument('--ready-file')
    args = parser.parse_args()

    kids = []
    for dummy in range(args.children):
        code = 'import signal,time\n'
        if args.children_ignore_term:
            code += 'signal.signal(signal.SIGTERM, signal.SIG_IGN)\n'
        code += 'print(1, flush=True)\ntime.sleep(3600)\n'
        kids.append(subprocess.Popen([sys.executable, '-c', code], close_fds=True, stdout=subprocess.PIPE))
    for kid in kids:
        kid.stdout.readline()  # the child's signal disposition is set

    server = None

    def on_term(signum: int, frame) -> None:  # pylint: disable=unused-argument
        if args.ignore_term:
            return
        if args.graceful:
            threading.Thread(target=server.shutdown).start()
            return
        if args.exit_delay_ms:
            time.sleep(args.exit_delay_ms / 1000.0)
        os._exit(0)

    # Signal handlers first, then the listening socket: once the port answers, the stop behaviour is in place.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, on_term)
    server = http.server.ThreadingHTTPServer((args.address, args.port), Handler)
    server.daemon_threads = False
    server.block_on_close = True
    if args.pidfile:
        with open(args.pidfile, 'w') as f:
            f.write('%d\n' % os.getpid())
    if args.ready_file:
        with open(args.ready_file, 'w') as f:
            f.write('%d\n' % os.getpid())
    server.serve_forever(poll_interval=0.05)
    server.server_close()
    sys.exit(0)


if __name__ == '__main__':
    main()
