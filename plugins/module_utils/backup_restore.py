# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Staged restore of an AnQiCMS backup with atomic swaps and rollback.

Databases are loaded into staging databases and swapped in with one ``RENAME TABLE`` per
site (MariaDB moves tables between databases atomically); the previous tables move into a
``*_opsg_old_*`` database. Files are extracted into a staging directory inside the site root
and swapped in by rename; the previous items move into ``.opsguard-old-*``. Every step done is
recorded so that a failure undoes exactly those steps and nothing else.
"""

from __future__ import annotations

import os
import shutil

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup import BackupError
from ansible_collections.opsguard.anqicms.plugins.module_utils.mysql_client import MysqlClient, MysqlError, quote_ident

CHARSET_SQL = 'CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci'


def derived_name(database: str, kind: str, token: str) -> str:
    """Name of a staging (``new``) or previous (``old``) database, at most 64 characters."""
    return '%s_opsg_%s_%s' % (database[:40], kind, token)


class Journal(object):
    """Steps done so far, undone in reverse order on failure."""

    def __init__(self) -> None:
        self.steps: list = []
        self.log: list = []

    def add(self, kind: str, **data) -> None:
        self.steps.append(dict(kind=kind, **data))

    def rollback(self, clients: dict) -> list:
        """Undo every step; return what could not be undone."""
        problems = []
        for step in reversed(self.steps):
            try:
                undo(step, clients)
                self.log.append('undone: %s' % describe(step))
            except (OSError, MysqlError, BackupError) as exc:
                problems.append('could not undo %s: %s' % (describe(step), exc))
        self.steps = []
        return problems


def describe(step: dict) -> str:
    kind = step['kind']
    if kind == 'create_db':
        return 'creation of database %s' % step['database']
    if kind == 'rename_tables':
        return 'table swap into %s' % step['live']
    if kind == 'rename_path':
        return 'rename of %s to %s' % (step['src'], step['dst'])
    if kind == 'mkdir':
        return 'creation of directory %s' % step['path']
    return kind


def undo(step: dict, clients: dict) -> None:
    kind = step['kind']
    if kind == 'create_db':
        client: MysqlClient = clients[step['client']]
        # Only a database this run created, and only once nothing is left in it.
        if client.database_exists(step['database']):
            if client.tables(step['database']) and not step.get('drop_contents'):
                raise BackupError('database %s is not empty; left in place' % step['database'])
            client.run_sql('DROP DATABASE %s;' % quote_ident(step['database']))
    elif kind == 'rename_tables':
        client = clients[step['client']]
        pairs = ['%s.%s TO %s.%s' % (quote_ident(step['live']), quote_ident(t), quote_ident(step['staging']), quote_ident(t))
                 for t in step['new_tables']]
        pairs += ['%s.%s TO %s.%s' % (quote_ident(step['previous']), quote_ident(t), quote_ident(step['live']), quote_ident(t))
                  for t in step['old_tables']]
        if pairs:
            client.run_sql('RENAME TABLE %s;' % ', '.join(pairs))
    elif kind == 'rename_path':
        os.rename(step['dst'], step['src'])
    elif kind == 'mkdir':
        if step.get('empty'):
            # A parent made for a swapped-in item: empty again once that item is back out.
            os.rmdir(step['path'])
        else:
            shutil.rmtree(step['path'])


def create_database(client: MysqlClient, key: str, database: str, journal: Journal, drop_contents: bool = False) -> None:
    """CREATE DATABASE, journalled only once the server has confirmed it: a failed CREATE is never undone."""
    client.run_sql('CREATE DATABASE %s %s;' % (quote_ident(database), CHARSET_SQL))
    journal.add('create_db', client=key, database=database, drop_contents=drop_contents)


def swap_tables(client: MysqlClient, key: str, live: str, staging: str, previous: str, journal: Journal) -> dict:
    """Move the live tables into ``previous`` and the staged ones into ``live`` in one RENAME TABLE.

    Each step is its own statement and enters the journal only after it succeeded, so a rollback undoes
    exactly what happened.
    """
    info = client.schema_info([live, staging])
    old_tables = sorted(info[live]['tables'])
    new_tables = sorted(info[staging]['tables'])
    if not info[live]['exists']:
        create_database(client, key, live, journal)
    if old_tables:
        create_database(client, key, previous, journal)
    pairs = ['%s.%s TO %s.%s' % (quote_ident(live), quote_ident(t), quote_ident(previous), quote_ident(t)) for t in old_tables]
    pairs += ['%s.%s TO %s.%s' % (quote_ident(staging), quote_ident(t), quote_ident(live), quote_ident(t)) for t in new_tables]
    if pairs:
        # RENAME TABLE is atomic: all pairs move, or none does.
        client.run_sql('RENAME TABLE %s;' % ', '.join(pairs))
        journal.add('rename_tables', client=key, live=live, staging=staging, previous=previous, old_tables=old_tables,
                    new_tables=new_tables)
    return {'database': live, 'previous': previous if old_tables else None, 'tables': len(new_tables),
            'previous_tables': len(old_tables)}


def swap_items(root: str, stage: str, old: str, items: tuple, journal: Journal) -> dict:
    """Swap each kept item of a site root for its staged copy by rename; previous items go to ``old``."""
    moved_old = []
    moved_new = []
    for item in items:
        live = os.path.join(root, item)
        staged = os.path.join(stage, item)
        if os.path.lexists(live):
            os.makedirs(os.path.dirname(os.path.join(old, item)), mode=0o700, exist_ok=True)
            os.rename(live, os.path.join(old, item))
            journal.add('rename_path', src=live, dst=os.path.join(old, item))
            moved_old.append(item)
        if os.path.lexists(staged):
            parent = os.path.dirname(live)
            if not os.path.isdir(parent):
                os.mkdir(parent, 0o755)
                journal.add('mkdir', path=parent, empty=True)
            os.rename(staged, live)
            journal.add('rename_path', src=staged, dst=live)
            moved_new.append(item)
    return {'root': root, 'restored': moved_new, 'previous': old if moved_old else None, 'previous_items': moved_old}
