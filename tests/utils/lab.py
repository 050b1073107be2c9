# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A test fleet (tests/lab/fleet.py) for the length of a ``with`` block: the module-scoped fixtures of the scenarios.

Import as ``ansible_collections.opsguard.anqicms.tests.utils.lab``.
"""
from __future__ import annotations

import contextlib
import pathlib
import sys
from typing import Any, Iterator

LAB_DIR = str(pathlib.Path(__file__).resolve().parents[1] / 'lab')


def _fleet_module() -> Any:
    if LAB_DIR not in sys.path:
        sys.path.insert(0, LAB_DIR)
    import fleet  # pylint: disable=import-outside-toplevel,import-error

    return fleet


@contextlib.contextmanager
def running_fleet(hosts: int, memory: str | int | None, name: str, lab: Any = None, image: str = 'machine') -> Iterator[Any]:
    """Bring up ``hosts`` hosts of ``memory`` each as lab ``name``; tear the lab down afterwards, also after a failure.

    ``lab`` is the fleet module (default: tests/lab/fleet.py); ``image`` the hosts' root filesystem
    (``machine``, ``fresh`` or ``provisioned``).
    """
    lab = lab or _fleet_module()
    running = lab.up(hosts, memory, name=name, image=image)
    try:
        yield running
    finally:
        lab.down(name)
