# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bounds of the process options (plugins/module_utils/bounds.py): every out-of-range value is refused with its range."""

from __future__ import annotations

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils import bounds, procfs
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.process_helpers import (
    PID_MAX,
)


class TestBounds:
    @pytest.mark.parametrize('value', [float('nan'), float('inf'), float('-inf'), 1e10, 1e308, -1, -1e-9, 86400.001, True, None, 'x'])
    def test_duration_refused(self, value):
        with pytest.raises(procfs.ProcessError, match='drain_timeout must be a number of seconds from 0 to 86400'):
            bounds.check_duration(value, 'drain_timeout')

    @pytest.mark.parametrize('value', [0, 0.0, 0.5, 86400, '7'])
    def test_duration_accepted(self, value):
        assert bounds.check_duration(value) == float(value)

    @pytest.mark.parametrize('value', [0, -1, 65536, 70000, 2 ** 64, True, None])
    def test_port_refused(self, value):
        with pytest.raises(procfs.ProcessError, match='port must be a TCP port between 1 and 65535'):
            bounds.check_port(value)

    @pytest.mark.parametrize('value', [0, -1, PID_MAX, 2 ** 40, 2 ** 64, True, None])
    def test_pid_refused(self, value):
        with pytest.raises(procfs.ProcessError, match='pid must be a process ID between 1 and %d' % (PID_MAX - 1)):
            bounds.check_pid(value)

    def test_pid_max_from_garbage(self, tmp_path):
        (tmp_path / 'sys' / 'kernel').mkdir(parents=True)
        for content, expected in (('32768\n', 32768), ('', bounds.PID_MAX_LIMIT), ('9' * 50, bounds.PID_MAX_LIMIT), ('-5', bounds.PID_MAX_LIMIT),
                                  ('99999999', bounds.PID_MAX_LIMIT), ('\xff', bounds.PID_MAX_LIMIT)):
            (tmp_path / 'sys' / 'kernel' / 'pid_max').write_text(content)
            assert bounds.pid_max(str(tmp_path)) == expected
        (tmp_path / 'sys' / 'kernel' / 'pid_max').unlink()
        assert bounds.pid_max(str(tmp_path)) == bounds.PID_MAX_LIMIT

    @pytest.mark.parametrize('pattern', ['(', '[z-a]', '*', 'a{2,1}', '(' * 1500 + ')' * 1500, 'x' * 5000, ''])
    def test_bad_pattern(self, pattern):
        with pytest.raises(procfs.ProcessError, match='cmdline_pattern'):
            bounds.compile_pattern(pattern)
