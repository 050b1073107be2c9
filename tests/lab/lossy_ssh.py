#!/usr/bin/env python
"""An ``ssh`` that loses one host for chosen module runs only: the host stops answering for one task and answers
again at the next, the same way every time (no timing, no network cut).

Ansible runs it as its SSH client (``ANSIBLE_SSH_EXECUTABLE``, with pipelining: the module comes on stdin). Every call
goes to the real ``ssh`` unchanged, except a call to the host named in ``OPSGUARD_LOSSY_SSH`` whose module payload
contains every string of its ``match`` list: that call reads its input, says what ssh says for a host that does not
answer, and exits 255, which Ansible reports as unreachable. Each such call is appended to ``log`` (if given).

OPSGUARD_LOSSY_SSH = JSON {"host": "10.1.2.3", "match": ["module_fqn='ansible.modules.systemd_service'", "reloaded"],
                           "log": "/path/to/lossy.log"}
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

REAL_SSH = shutil.which("ssh") or "/usr/bin/ssh"


def lost(argv: list[str], payload: bytes, config: dict) -> bool:
    """Whether this call, to these arguments with this stdin, is one the host does not answer."""
    host = str(config.get("host") or "")
    match = [str(item).encode() for item in config.get("match") or []]
    return bool(host) and host in argv[1:] and bool(match) and all(item in payload for item in match)


def main() -> int:
    config = json.loads(os.environ.get("OPSGUARD_LOSSY_SSH") or "{}")
    argv = sys.argv
    # Only a module run (pipelining: a Python on the remote end, the module on stdin) can be lost; anything else
    # (ControlMaster checks, file transfers) passes through untouched, stdin included.
    # A terminal on stdin (-tt) carries no module and is closed only after ssh ends: never read it.
    if (not config or str(config.get("host") or "") not in argv[1:] or "python" not in (argv[-1] if len(argv) > 1 else "")
            or "-tt" in argv or sys.stdin.isatty()):
        os.execv(REAL_SSH, [REAL_SSH, *argv[1:]])
    payload = sys.stdin.buffer.read()
    if lost(argv, payload, config):
        if config.get("log"):
            with open(config["log"], "a", encoding="utf-8") as log:
                log.write(json.dumps({"host": config["host"], "match": config["match"]}) + "\n")
        sys.stderr.write(f"ssh: connect to host {config['host']} port 22: Connection timed out\r\n")
        return 255
    return subprocess.run([REAL_SSH, *argv[1:]], input=payload, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
