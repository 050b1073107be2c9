# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import datetime
import os

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_retention import apply_retention, plan_retention, retention_problems, select_expired
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import MANIFEST, BackupError
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.test_backup_store import make_backup

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)


def entries(*ages_days: float) -> list:
    return [{'id': str(i), 'time': NOW - datetime.timedelta(days=a)} for i, a in enumerate(ages_days)]


@pytest.mark.parametrize('ages, keep, keep_days, expired', [
    ((0, 1, 2, 3), 2, None, ['2', '3']),
    ((0, 1, 2, 3), None, 1.5, ['2', '3']),
    ((0, 1, 2, 3), 1, 2.5, ['3']),             # either rule keeps a backup
    ((0, 1, 2, 3), None, None, []),
    ((10, 20), None, 1, ['1']),                 # all too old: the newest good one still stays
    ((10,), 1, 0, []),
])
def test_select_expired(ages, keep, keep_days, expired):
    assert [e['id'] for e in select_expired(entries(*ages), keep, keep_days, NOW)] == expired


def test_keep_zero_is_refused():
    with pytest.raises(BackupError, match=r'keep must be from 1 to 100000 \(the newest good backup is never deleted\); got 0'):
        select_expired(entries(0, 1), 0, None, NOW)


def test_retention_deletes_only_good_backups_of_the_instance(tmp_path):
    inst = tmp_path / 'shop'
    ids = ['20260101T000000000000Z', '20260102T000000000000Z', '20260103T000000000000Z']
    for backup_id in ids:
        make_backup(inst, backup_id)
    make_backup(inst, '20251201T000000000000Z', instance='other')
    (make_backup(inst, '20251202T000000000000Z') / MANIFEST).write_text('damaged')
    (inst / '.partial-20251203T000000000000Z').mkdir()
    (inst / 'notes').mkdir()
    assert apply_retention(str(inst), 'shop', 1, None, NOW, check_mode=True)['removed'] == ids[:2][::-1]
    assert len(os.listdir(inst)) == 7
    done = apply_retention(str(inst), 'shop', 1, None, NOW)
    assert done['removed'] == ids[:2][::-1]
    assert [d['id'] for d in done['damaged']] == ['20251202T000000000000Z']
    assert sorted(os.listdir(inst)) == sorted(['.partial-20251203T000000000000Z', '20251201T000000000000Z',
                                               '20251202T000000000000Z', ids[2], 'notes'])


def test_plan_retention_verifies_before_it_counts():
    good = entries(0, 1, 2, 3, 4)
    broken = {'1': 'flipped byte', '3': 'missing artifact'}
    plan = plan_retention(good, 2, None, NOW, check=lambda e: broken.get(e['id']))
    assert [e['id'] for e in plan['kept']] == ['0', '2']
    assert [e['id'] for e in plan['damaged']] == ['1', '3'] and plan['damaged'][0]['error'] == 'flipped byte'
    assert [e['id'] for e in plan['expired']] == ['4']


def test_plan_retention_checks_only_what_it_must():
    checked = []
    good = [dict(e, trusted=(e['id'] == '0')) for e in entries(0, 0.5, 0.7, 3, 4)]
    plan = plan_retention(good, 2, 1, NOW, check=lambda e: checked.append(e['id']))
    # '0' is trusted (just written), '0.5'-aged '1' fills keep=2, '2' is young (kept unchecked), '3' and '4' expire.
    assert checked == ['1', '3', '4'] and [e['id'] for e in plan['expired']] == ['3', '4']
    assert [e['id'] for e in plan['kept']] == ['0', '1', '2']


@pytest.mark.parametrize('keep, keep_days, message', [
    (0, None, 'keep must be from 1'), (True, None, 'keep must be an integer'), (1.5, None, 'keep must be an integer'),
    (None, float('nan'), 'finite'), (None, float('inf'), 'finite'), (None, -0.5, 'from 0 to 36500'),
    (None, 1e308, 'from 0 to 36500'), (None, '3', 'must be a number'),
])
def test_retention_options_are_checked(keep, keep_days, message):
    assert message in ' '.join(retention_problems(keep, keep_days))
    with pytest.raises(BackupError, match=message):
        plan_retention(entries(0, 1), keep, keep_days, NOW)
