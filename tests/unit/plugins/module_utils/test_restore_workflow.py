# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import os
import re
import shutil

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.opsguard.anqicms.plugins.module_utils import restore_workflow
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import KEEP_ITEMS
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_workflow import Backup
from ansible_collections.opsguard.anqicms.plugins.module_utils.restore_workflow import (
    Journal, Restore, RestoreFailed, derived_name, swap_items, swap_tables,
)
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.fake_mariadb import FakeClient, FakeServer, factory
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.test_backup_workflow import backup_params, two_sites


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


# --- the whole restore, driven with an in-memory database server -------------------------------------------------

def restore_params(path: str, dest: str, **extra) -> dict:
    params = {'path': path, 'instance': None, 'dest': dest, 'backup_id': 'latest', 'backup_path': None, 'exe': None, 'sites': None,
              'databases': True, 'files': True, 'force': False, 'keep_previous': True, 'check_tables': True, 'timeout': 60,
              'login_user': None, 'login_password': None, 'login_host': None, 'login_port': None, 'login_unix_socket': None}
    params.update(extra)
    return params


class Fleet(object):
    """A verified backup of two sites taken once, and live state (trees and databases) that can be reset to after it."""

    def __init__(self, base) -> None:
        self.base = base
        self.inst, self.two, server = two_sites(base)
        Backup(backup_params(str(self.inst), str(base / 'dest'), verify=True), client_factory=factory(server),
               running=lambda exe: []).run()
        self.backed_up = {'shop': snapshot(self.inst), 'two': snapshot(self.two)}
        # What changed since the backup: the restore has to undo this, a rollback has to keep it.
        (self.inst / 'public' / 'a.txt').write_text('changed after the backup')
        (self.inst / 'data').mkdir()
        (self.inst / 'data' / 'new.txt').write_text('new after the backup')
        (self.two / 'template' / 'index.html').write_text('changed template')
        self.live_databases = {'shop': {'websites': 2, 'archives': 11}, 'two': {'posts': 4, 'comments': 1}, 'unrelated': {'x': 1}}
        self.rows = server.sites_rows
        self.pristine = base / 'pristine'
        shutil.copytree(self.inst, self.pristine / 'shop', symlinks=True)
        shutil.copytree(self.two, self.pristine / 'two', symlinks=True)

    def reset(self) -> FakeServer:
        for name, live in (('shop', self.inst), ('two', self.two)):
            shutil.rmtree(live)
            shutil.copytree(self.pristine / name, live, symlinks=True)
        return FakeServer(self.live_databases, sites_rows=self.rows)

    def live_files(self) -> dict:
        return {'shop': snapshot(self.inst), 'two': snapshot(self.two)}

    def restore(self, server: FakeServer, **extra) -> dict:
        return Restore(restore_params(str(self.inst), str(self.base / 'dest'), **extra), client_factory=factory(server),
                       running=lambda exe: [], token='t0k3n').run()


@pytest.fixture
def fleet(tmp_path):
    return Fleet(tmp_path)


def test_restore_swaps_in_every_site_and_keeps_the_previous_state(fleet):
    server = fleet.reset()
    result = fleet.restore(server)
    state = server.state()
    assert state['shop'] == {'websites': 2, 'archives': 10} and state['two'] == {'posts': 3}
    assert state['shop_opsg_old_t0k3n'] == fleet.live_databases['shop'] and state['two_opsg_old_t0k3n'] == fleet.live_databases['two']
    assert not [db for db in state if '_opsg_new_' in db], 'staging databases must be dropped'
    restored = dict((site, dict((k, v) for k, v in tree.items() if not k.startswith('.opsguard-old-t0k3n/')))
                    for site, tree in fleet.live_files().items())
    assert restored == fleet.backed_up, 'the kept items of both roots are the backed-up ones'
    assert [d['previous'] for d in result['databases']] == ['shop_opsg_old_t0k3n', 'two_opsg_old_t0k3n']
    assert (fleet.inst / '.opsguard-old-t0k3n' / 'data' / 'new.txt').read_text() == 'new after the backup'
    assert all(c.closed for c in server.clients)


def test_restore_without_keep_previous_leaves_only_the_restored_state(fleet):
    server = fleet.reset()
    fleet.restore(server, keep_previous=False)
    assert server.state() == {'shop': {'websites': 2, 'archives': 10}, 'two': {'posts': 3}, 'unrelated': {'x': 1}}
    assert not [n for n in os.listdir(fleet.inst) if n.startswith('.opsguard-')]


def test_swap_tables_moves_live_aside_and_staged_in_and_its_undo_restores_them():
    server = FakeServer({'shop': {'a': 1, 'b': 2}, 'stage': {'a': 5, 'c': 6}})
    client = FakeClient(server, {})
    journal = Journal()
    result = swap_tables(client, 'k', 'shop', 'stage', 'shop_old', journal)
    assert result == {'database': 'shop', 'previous': 'shop_old', 'tables': 2, 'previous_tables': 2}
    assert server.state() == {'shop': {'a': 5, 'c': 6}, 'stage': {}, 'shop_old': {'a': 1, 'b': 2}}
    assert [s['kind'] for s in journal.steps] == ['create_db', 'rename_tables']
    assert journal.rollback({'k': client}) == []
    assert server.state() == {'shop': {'a': 1, 'b': 2}, 'stage': {'a': 5, 'c': 6}}


def test_swap_tables_into_a_missing_live_database_creates_it_and_the_undo_drops_it():
    server = FakeServer({'stage': {'a': 5}})
    client = FakeClient(server, {})
    journal = Journal()
    assert swap_tables(client, 'k', 'shop', 'stage', 'shop_old', journal)['previous'] is None
    assert server.state() == {'shop': {'a': 5}, 'stage': {}}
    assert journal.rollback({'k': client}) == [] and server.state() == {'stage': {'a': 5}}


def test_a_failure_in_the_middle_of_the_swap_puts_the_original_tables_back(fleet):
    server = fleet.reset()
    before = server.state()
    files = fleet.live_files()
    # The swap of site 1 succeeded; the RENAME TABLE of site 2 fails.
    server.fail = lambda sql: 'ERROR 1025 (HY000): Error on rename' if sql.startswith('RENAME TABLE `two`.') else None
    with pytest.raises(RestoreFailed) as failed:
        fleet.restore(server)
    assert server.state() == before and fleet.live_files() == files
    assert failed.value.problems == [] and failed.value.changed and failed.value.tb is None
    assert 'undone: table swap into shop' in failed.value.rolled_back
    assert 'every step was undone, the previous state is back' in failed.value.message('restore')


def test_a_failure_after_the_files_are_swapped_undoes_files_and_tables(fleet, monkeypatch):
    real = restore_workflow.swap_items
    calls: list = []

    def swap_then_fail(*args):
        out = real(*args)
        calls.append(out)
        if len(calls) == 2:
            raise OSError(5, 'Input/output error')
        return out

    monkeypatch.setattr(restore_workflow, 'swap_items', swap_then_fail)
    server = fleet.reset()
    before = server.state()
    files = fleet.live_files()
    with pytest.raises(RestoreFailed) as failed:
        fleet.restore(server)
    assert len(calls) == 2 and calls[1]['restored'], 'both roots were swapped before the failure'
    assert server.state() == before and fleet.live_files() == files
    assert failed.value.problems == [] and 'Input/output error' in failed.value.message('restore')
    assert failed.value.tb and 'OSError' in failed.value.tb, 'an unexpected error keeps its traceback'
    assert not [n for n in os.listdir(fleet.inst) if n.startswith('.opsguard-')]


def test_a_refused_login_claims_no_rollback(fleet):
    server = fleet.reset()
    before = server.state()
    files = fleet.live_files()
    server.fail = lambda sql: "ERROR 1045 (28000): Access denied for user 'app'@'localhost'" if sql.startswith('CREATE') else None
    with pytest.raises(RestoreFailed) as failed:
        fleet.restore(server)
    message = failed.value.message('restore')
    assert 'Access denied' in message and 'creating staging database shop_opsg_new_t0k3n' in message
    assert 'ROLLBACK INCOMPLETE' not in message and failed.value.problems == []
    # Only the staging directories made side by side with the refused CREATE are undone; no database was ever created.
    assert not any('database' in line for line in failed.value.rolled_back), failed.value.rolled_back
    assert all(line.startswith('undone: creation of directory ') and '.opsguard-new-t0k3n' in line
               for line in failed.value.rolled_back), failed.value.rolled_back
    assert server.state() == before and fleet.live_files() == files


def test_an_undo_step_that_fails_is_named_not_hidden(fleet, monkeypatch):
    server = fleet.reset()
    server.fail = lambda sql: 'ERROR 1025 (HY000): Error on rename' if sql.startswith('RENAME TABLE `two`.') else None
    real_rollback = Journal.rollback

    def rollback(journal, clients):
        server.fail = lambda sql: 'ERROR 2013 (HY000): Lost connection' if sql.startswith('RENAME TABLE `shop`.') else None
        return real_rollback(journal, clients)

    monkeypatch.setattr(Journal, 'rollback', rollback)
    with pytest.raises(RestoreFailed) as failed:
        fleet.restore(server)
    # The swap could not be undone, so the database holding the previous tables is not empty: it is left, never dropped.
    assert failed.value.problems == ['could not undo table swap into shop: ERROR 2013 (HY000): Lost connection',
                                     'could not undo creation of database shop_opsg_old_t0k3n: database shop_opsg_old_t0k3n '
                                     'is not empty; left in place']
    assert server.state()['shop_opsg_old_t0k3n'] == fleet.live_databases['shop']
    assert 'ROLLBACK INCOMPLETE: could not undo table swap into shop' in failed.value.message('restore')


class Recorder(object):
    """Statements the server ran without error, in order; the ``fail_at``-th statement (from 0) fails."""

    def __init__(self, server: FakeServer, fail_at: int) -> None:
        self.done: list = []
        self.before_failure: list = []
        self.count = 0
        self.fail_at = fail_at
        server.fail = self.decide

    def decide(self, sql: str):
        index = self.count
        self.count += 1
        if index == self.fail_at:
            self.before_failure = list(self.done)
            return 'ERROR 2013 (HY000): Lost connection to server during query'
        self.done.append(sql)
        return None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fail_at=st.integers(min_value=0, max_value=40))
def test_whatever_statement_fails_the_journal_holds_only_what_happened(fleet, fail_at):
    server = fleet.reset()
    before = server.state()
    files = fleet.live_files()
    recorder = Recorder(server, fail_at)
    try:
        fleet.restore(server)
    except RestoreFailed as failed:
        assert failed.problems == [], failed.problems
        if 'was restored' in str(failed):
            # Failed while cleaning up after every swap: nothing is undone and the message says the restore is done.
            assert failed.rolled_back == [] and server.state()['shop'] == {'websites': 2, 'archives': 10}
            return
        assert server.state() == before and fleet.live_files() == files
        # Every database the rollback dropped is one whose CREATE the server confirmed, and every confirmed one was dropped.
        created = [re.match(r'CREATE DATABASE `([^`]+)`', s).group(1) for s in recorder.before_failure if s.startswith('CREATE DATABASE')]
        undone = [line.split()[-1] for line in failed.rolled_back if line.startswith('undone: creation of database')]
        assert sorted(undone) == sorted(created)
        swaps = [s for s in recorder.before_failure if s.startswith('RENAME TABLE')]
        assert len([line for line in failed.rolled_back if line.startswith('undone: table swap')]) == len(swaps)
    else:
        assert fail_at >= recorder.count, 'a restore succeeded although a statement failed'
        assert server.state()['shop'] == {'websites': 2, 'archives': 10}
