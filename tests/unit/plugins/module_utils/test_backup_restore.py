# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import os

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup import KEEP_ITEMS
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_restore import Journal, derived_name, swap_items


def populate(root, files: dict) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def snapshot(root) -> dict:
    out = {}
    for dirpath, _dirs, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = open(path).read()
    return out


@pytest.fixture
def site(tmp_path):
    root = tmp_path / 'root'
    populate(root, {'config.json': 'live', 'public/uploads/a': 'live-a', 'cache/page': 'regenerable', 'anqicms': 'bin'})
    stage = root / '.opsguard-new-t'
    populate(stage, {'config.json': 'restored', 'public/uploads/b': 'restored-b', 'cache/.history/h': 'restored-h'})
    old = root / '.opsguard-old-t'
    old.mkdir()
    return root, stage, old


def test_swap_moves_live_items_aside_and_staged_ones_in(site):
    root, stage, old = site
    journal = Journal()
    result = swap_items(str(root), str(stage), str(old), KEEP_ITEMS, journal)
    assert result['restored'] == ['config.json', 'public', 'cache/.history']
    assert result['previous_items'] == ['config.json', 'public']
    assert (root / 'config.json').read_text() == 'restored'
    assert not (root / 'public' / 'uploads' / 'a').exists() and (root / 'public' / 'uploads' / 'b').exists()
    assert (old / 'public' / 'uploads' / 'a').read_text() == 'live-a'
    assert (root / 'cache' / 'page').read_text() == 'regenerable' and (root / 'anqicms').read_text() == 'bin'


def test_rollback_restores_the_exact_previous_state(site):
    root, stage, old = site
    before_root = snapshot(root)
    journal = Journal()
    swap_items(str(root), str(stage), str(old), KEEP_ITEMS, journal)
    assert snapshot(root) != before_root
    assert journal.rollback({}) == []
    assert snapshot(root) == before_root
    assert len(journal.log) == 5


def test_rollback_reports_what_it_could_not_undo(site):
    root, stage, old = site
    journal = Journal()
    swap_items(str(root), str(stage), str(old), KEEP_ITEMS, journal)
    os.rename(root / 'config.json', root / 'moved-by-someone')
    problems = journal.rollback({})
    assert len(problems) == 1 and 'config.json' in problems[0]


@pytest.mark.parametrize('database', ['shop', 'x' * 64])
def test_derived_names_fit_mariadb_limits(database):
    name = derived_name(database, 'old', 'abcdef12')
    assert len(name) <= 64 and name.endswith('_opsg_old_abcdef12')


def test_rollback_removes_a_parent_made_for_a_swapped_in_item(tmp_path):
    root = tmp_path / 'root'
    populate(root, {'config.json': 'live'})
    stage = root / '.opsguard-new-t'
    populate(stage, {'cache/.history/h': 'restored-h'})
    old = root / '.opsguard-old-t'
    old.mkdir()
    before = snapshot(root)
    journal = Journal()
    swap_items(str(root), str(stage), str(old), KEEP_ITEMS, journal)
    assert (root / 'cache' / '.history' / 'h').read_text() == 'restored-h'
    assert [s for s in journal.steps if s['kind'] == 'mkdir'] == [{'kind': 'mkdir', 'path': str(root / 'cache'), 'empty': True}]
    assert journal.rollback({}) == []
    assert snapshot(root) == before and not (root / 'cache').exists(), 'the cache/ made for the swap must go again'
