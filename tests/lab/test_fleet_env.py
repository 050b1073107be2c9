"""The environment of ansible runs against the fleet (no fleet, no root needed).

Run: cd /work/main && .venv/bin/python -m pytest tests/lab/test_fleet_env.py -q
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import fleet
from ansible_collections.opsguard.anqicms.tests.utils import ansible_runner  # fleet put .collections on sys.path


def test_runs_from_any_directory_use_ssh_pipelining(tmp_path: Path) -> None:
    lab = fleet.Fleet({"name": "oglab", "state_dir": str(tmp_path / "state"), "hosts": []})
    env = lab.ansible_env()
    assert env["ANSIBLE_PIPELINING"] == "True"
    # A directory without ansible.cfg (as the scenarios that run playbooks from a report directory): ansible itself
    # reports pipelining on, from the environment.
    dump = subprocess.run([ansible_runner.tool("ansible-config"), "dump", "--only-changed"], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, check=True, timeout=120).stdout
    assert "ANSIBLE_PIPELINING(env: ANSIBLE_PIPELINING) = True" in dump, dump
