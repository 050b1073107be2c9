# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Diagnostics of a process before it is stopped (plugins/module_utils/diagnostics.py) and their private file."""

from __future__ import annotations

import os
import sys

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils import diagnostics, procfs, sockets
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.process_helpers import (
    LISTENER,
    ready_process,
)


def test_diagnostics_content(procs, tmp_path):
    proc = ready_process(procs, LISTENER)
    ident = procfs.read_identity(proc.pid)
    data = diagnostics.collect_diagnostics(ident, [ident])
    assert data['identity']['pid'] == proc.pid
    assert data['cmdline'][0] == sys.executable
    assert 'VmRSS' in data['status'] and 'Rss' in data['smaps_rollup']
    assert any(f['target'].startswith('socket:[') for f in data['fds'])
    assert any(c['state'] == sockets.TCP_LISTEN for c in data['connections'])
    assert data['threads'][0]['tid'] == proc.pid
    assert 'environ' not in data and 'environ' not in str(sorted(data))
    path = diagnostics.write_json_private(str(tmp_path / 'diag'), 'x.json', data)
    assert oct(os.stat(path).st_mode & 0o777) == '0o600'
    assert oct(os.stat(str(tmp_path / 'diag')).st_mode & 0o777) == '0o700'


class TestDiagnosticsFile:
    def test_unwritable_directory_is_a_refusal(self, tmp_path):
        blocker = tmp_path / 'file'
        blocker.write_text('x')
        with pytest.raises(procfs.ProcessError, match='cannot write diagnostics'):
            diagnostics.write_json_private(str(blocker / 'diag'), 'x.json', {})

    @pytest.mark.parametrize('name', ['', '.', '..', 'a/b.json', '../x.json', 'x\0.json'])
    def test_bad_file_name_refused(self, tmp_path, name):
        with pytest.raises(procfs.ProcessError, match='not a plain file name'):
            diagnostics.write_json_private(str(tmp_path), name, {})

    def test_planted_symlink_is_replaced_not_followed(self, tmp_path):
        victim = tmp_path / 'victim'
        victim.write_text('keep')
        diag = tmp_path / 'diag'
        diag.mkdir()
        (diag / 'x.json.tmp').symlink_to(victim)
        (diag / 'x.json').symlink_to(victim)
        path = diagnostics.write_json_private(str(diag), 'x.json', {'a': 1})
        assert victim.read_text() == 'keep'
        assert not os.path.islink(path) and open(path).read().startswith('{')
        assert sorted(os.listdir(str(diag))) == ['x.json', 'x.json.tmp']
