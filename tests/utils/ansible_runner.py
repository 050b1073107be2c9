# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running ansible-playbook from tests: the executables, private files for plays and extra vars, the JSON report.

Import as ``ansible_collections.opsguard.anqicms.tests.utils.ansible_runner``.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Iterator

REPO = pathlib.Path(__file__).resolve().parents[2]
# The ansible.posix json stdout callback: one JSON document with every play, task and host result.
JSON_CALLBACK = {'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json', 'ANSIBLE_CALLBACK_RESULT_FORMAT': 'json'}
RECAP = re.compile(r'^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', re.M)


def tool(name: str) -> str:
    """Path of an Ansible program: next to this Python, in the repository's .venv, or on PATH."""
    for candidate in (pathlib.Path(sys.executable).parent / name, REPO / '.venv' / 'bin' / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError('%s not found next to %s, in %s or on PATH: install ansible-core'
                                % (name, sys.executable, REPO / '.venv' / 'bin'))
    return found


@contextlib.contextmanager
def private_file(directory: str | os.PathLike, prefix: str, suffix: str, content: str) -> Iterator[str]:
    """A file only its owner can read (mode 0600) holding ``content``, removed afterwards; yields its path."""
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=str(directory))
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            handle.write(content)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of ansible-playbook's default output: host -> ok, changed, unreachable, failed."""
    return {m.group(1): {'ok': int(m.group(2)), 'changed': int(m.group(3)), 'unreachable': int(m.group(4)),
                         'failed': int(m.group(5))} for m in RECAP.finditer(output)}


def changed_tasks(output: str) -> str:
    """The task headers followed by a ``changed:`` line (at most 40), for the message of an idempotence assertion."""
    task, found = '', []
    for line in output.splitlines():
        if line.startswith('TASK ['):
            task = line
        elif line.startswith('changed:'):
            found.append(task + ' ' + line[:160])
    return '\n'.join(found[:40])


def json_report(output: str) -> dict[str, Any] | None:
    """The JSON callback's document in ``output`` (warnings may precede it), or None."""
    try:
        return json.loads(output[output.index('{'):])
    except ValueError:
        return None


def host_result(report: dict[str, Any] | None, host: str, play: int = 0, task: int = 0) -> dict[str, Any] | None:
    """One host's result of one task in a JSON report, or None when the report has none."""
    try:
        return dict(report['plays'][play]['tasks'][task]['hosts'][host])  # type: ignore[index]
    except (TypeError, KeyError, IndexError):
        return None


def run_play(play: list[dict[str, Any]], inventory: str, env: dict[str, str], directory: str | os.PathLike,
             timeout: float = 900) -> tuple[subprocess.CompletedProcess, dict[str, Any] | None]:
    """Run ``play`` (a list of plays) with ansible-playbook and the JSON callback.

    The play is written to a private file in ``directory``; returns the finished process and its JSON report
    (None when ansible-playbook printed none).
    """
    with private_file(directory, 'play-', '.yml', json.dumps(play)) as path:
        proc = subprocess.run([tool('ansible-playbook'), '-i', inventory, path], capture_output=True, text=True,
                              env=dict(env, **JSON_CALLBACK), timeout=timeout, check=False)
    return proc, json_report(proc.stdout)
