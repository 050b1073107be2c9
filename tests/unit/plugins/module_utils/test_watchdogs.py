# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Watchdogs (plugins/module_utils/watchdogs.py): cron lines that would start an instance again."""

from __future__ import annotations

import os

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils import procfs, watchdogs
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.process_helpers import (
    fixture,
)


class TestParsing:
    def test_cron_watchdogs(self):
        files = (fixture('cron', 'crontab'), fixture('cron', 'cron.d', 'anqicms'), fixture('cron', 'crontabs', 'root'))
        found = watchdogs.cron_watchdogs('/opt/anqicms/site1', '/opt/anqicms/site1/anqicms', files)
        got = [(os.path.basename(w['file']), w['line_number']) for w in found]
        assert got == [('crontab', 5), ('anqicms', 5), ('root', 2)]
        assert all(w['type'] == 'cron' for w in found)
        other = watchdogs.cron_watchdogs('/opt/anqicms/site2', '/opt/anqicms/site2/anqicms', files)
        assert [(os.path.basename(w['file']), w['line_number']) for w in other] == [('anqicms', 3)]
        assert watchdogs.cron_watchdogs('/opt/anqicms/site3', '/opt/anqicms/site3/anqicms', files) == []


CRON_FILES = (fixture('cron', 'crontab'), fixture('cron', 'cron.d', 'anqicms'), fixture('cron', 'crontabs', 'root'))


@pytest.mark.parametrize('cgroup, unit, restart, expected', [
    # stopped through its unit: the unit's own Restart=, nothing looked up
    ('0::/system.slice/anqicms-site1.service\n', {'Id': 'anqicms-site1.service', 'Restart': 'always'}, None,
     {'type': 'systemd', 'unit': 'anqicms-site1.service', 'restart': 'always'}),
    # a process of a service: its Restart= looked up
    ('0::/system.slice/anqicms-site1.service\n', None, 'on-failure',
     {'type': 'systemd', 'unit': 'anqicms-site1.service', 'restart': 'on-failure'}),
    # no systemd to ask
    ('1:name=systemd:/system.slice/anqicms-site1.service\n', None, None,
     {'type': 'systemd', 'unit': 'anqicms-site1.service', 'restart': None}),
    # started by hand from a login session: no unit to restart it
    ('0::/user.slice/user-0.slice/session-3.scope\n', None, 'always', None),
])
def test_watchdogs_of_a_process(tmp_path, cgroup, unit, restart, expected):
    (tmp_path / '4242').mkdir()
    (tmp_path / '4242' / 'cgroup').write_text(cgroup)
    ident = procfs.Identity(4242, 1, 100, '/opt/anqicms/site1/anqicms (deleted)', 'anqicms', 'S')
    asked = []

    def restart_of(name):
        asked.append(name)
        return restart

    found = watchdogs.watchdogs(ident, unit, restart_of, proc=str(tmp_path), cron_files=CRON_FILES)
    assert [(os.path.basename(w['file']), w['line_number']) for w in found if w['type'] == 'cron'] == [
        ('crontab', 5), ('anqicms', 5), ('root', 2)]
    assert [w for w in found if w['type'] == 'systemd'] == ([expected] if expected else [])
    assert asked == ([] if unit or not expected else [expected['unit']])
