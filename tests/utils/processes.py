# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Child processes the tests and the demos start in a session of their own (start_new_session=True)."""
from __future__ import annotations

import os
import signal
import subprocess


def stop_session(proc: subprocess.Popen | None, grace: float = 60, kill_wait: float = 30) -> None:
    """SIGTERM to the whole process group of ``proc`` (its children too), SIGKILL after ``grace`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=kill_wait)
