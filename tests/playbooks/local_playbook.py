"""Running one of the collection's playbooks against this machine over the local connection, for tests/playbooks."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
# node1 in group app, reached over the local connection with this Python.
LOCAL_INVENTORY = ('all:\n  children:\n    app:\n      hosts:\n        node1:\n'
                   '          ansible_connection: local\n'
                   '          ansible_python_interpreter: {python}\n')


def run_playbook(tmp_path: pathlib.Path, playbook: str, *args: str, more_inventory: str = '',
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``ansible-playbook -i INVENTORY opsguard.anqicms.PLAYBOOK ARGS...`` in ``tmp_path``; the inventory is node1 plus
    ``more_inventory`` (more groups under ``all.children``)."""
    inventory = tmp_path / 'inventory.yml'
    inventory.write_text(LOCAL_INVENTORY.format(python=sys.executable) + more_inventory)
    environ = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / '.collections'), ANSIBLE_NOCOLOR='1',
                   ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0', **(env or {}))
    command = [str(pathlib.Path(sys.executable).with_name('ansible-playbook')), '-i', str(inventory),
               f'opsguard.anqicms.{playbook}', *args]
    return subprocess.run(command, env=environ, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
