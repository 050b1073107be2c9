# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Staged restore of an AnQiCMS backup with atomic swaps, an undo journal and rollback.

Databases are loaded into staging databases and swapped in with one ``RENAME TABLE`` per
site (MariaDB moves tables between databases atomically); the previous tables move into a
``*_opsg_old_*`` database. Files are extracted into a staging directory inside the site root
and swapped in by rename; the previous items move into ``.opsguard-old-*``. Every step done is
recorded once it has happened, so that a failure undoes exactly those steps and nothing else.

:class:`Restore` takes the module's (already validated) parameters; the database client and the check
whether the instance runs are injected, so tests drive the whole workflow, rollback included, with fakes.
"""

from __future__ import annotations

import os
import shutil
import traceback
import uuid

from ansible_collections.opsguard.anqicms.plugins.module_utils import paths
from ansible_collections.opsguard.anqicms.plugins.module_utils.anqicms_instance import (
    SITES_SQL, connection, discover_sites, read_instance_config, running_pids,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import (
    KEEP_ITEMS, BackupError, find_backup, in_parallel, verify_backup,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_streams import extract_files, load_dump
from ansible_collections.opsguard.anqicms.plugins.module_utils.mysql_client import MysqlClient, MysqlError
from ansible_collections.opsguard.anqicms.plugins.module_utils.sql import SqlError, quote_ident

CHARSET_SQL = 'CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci'
# What an undo step may fail with: reported as a rollback problem, never raised.
UNDO_ERRORS = (OSError, MysqlError, SqlError, BackupError)


def derived_prefix(database: str) -> str:
    """What the name of every staging and previous database of ``database`` starts with (the grants match it)."""
    return '%s_opsg_' % database[:40]


def derived_name(database: str, kind: str, token: str) -> str:
    """Name of a staging (``new``) or previous (``old``) database, at most 64 characters."""
    return '%s%s_%s' % (derived_prefix(database), kind, token)


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
            except UNDO_ERRORS as exc:
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
        client = clients[step['client']]
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


def create_database(client, key: str, database: str, journal: Journal, drop_contents: bool = False) -> None:
    """CREATE DATABASE, journalled only once the server has confirmed it: a failed CREATE is never undone."""
    client.run_sql('CREATE DATABASE %s %s;' % (quote_ident(database), CHARSET_SQL))
    journal.add('create_db', client=key, database=database, drop_contents=drop_contents)


def swap_tables(client, key: str, live: str, staging: str, previous: str, journal: Journal) -> dict:
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


def default_connection(path: str, stage_dirs: dict) -> dict | None:
    """Site 1's connection: the live config.json, else the one staged from the backup."""
    for candidate in (path, stage_dirs.get(1)):
        if candidate:
            try:
                return read_instance_config(candidate)
            except (BackupError, ValueError, TypeError, AttributeError):
                # Unusable (missing, not JSON, wrong types): try the next candidate.
                continue
    return None


class RestoreFailed(Exception):
    """A restore that failed, with what was undone. ``tb`` is the traceback of an unexpected error, else None."""

    def __init__(self, cause: Exception, changed: bool, rolled_back: list, problems: list, tb: str | None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.changed = changed
        self.rolled_back = rolled_back
        self.problems = problems
        self.tb = tb

    def message(self, where: str) -> str:
        if self.problems:
            return '%s failed: %s; ROLLBACK INCOMPLETE: %s' % (where, self.cause, '; '.join(self.problems))
        if self.changed:
            return '%s failed: %s; every step was undone, the previous state is back' % (where, self.cause)
        return '%s failed: %s' % (where, self.cause)


class Restore(object):
    """One restore task: verify, plan, stage, swap, clean up; on any failure undo exactly the steps done.

    ``client_factory(conn, timeout=...)`` makes a database client (:class:`MysqlClient` or a fake with the same
    methods); ``running(exe)`` lists the PIDs running the instance; ``token`` names the staging and previous
    databases and directories (random when not given).
    """

    def __init__(self, params: dict, client_factory=MysqlClient, running=running_pids, token: str | None = None) -> None:
        self.p = params
        self.client_factory = client_factory
        self.running_of = running
        self.token = token or uuid.uuid4().hex[:8]
        self.journal = Journal()
        self.clients: dict = {}

    def run(self, check_mode: bool = False) -> dict:
        """The result of the restore (or, in check mode, its plan); raises RestoreFailed after rolling back."""
        try:
            try:
                return self._run(check_mode)
            except Exception as exc:  # pylint: disable=broad-except
                # Whatever failed, undo exactly the steps done; unexpected errors keep their traceback.
                changed = bool(self.journal.steps)
                problems = self.journal.rollback(self.clients)
                tb = None if isinstance(exc, (BackupError, MysqlError)) else traceback.format_exc()
                raise RestoreFailed(exc, changed, self.journal.log, problems, tb) from None
        finally:
            for client in self.clients.values():
                client.close()
            self.clients = {}

    def _locate(self, path: str, instance: str) -> tuple:
        """(backup directory, its verified manifest, PIDs running the instance); refuses before touching anything."""
        p = self.p
        if p['backup_path']:
            directory = paths.resolve(p['backup_path'], 'backup_path', BackupError)
        elif p['dest']:
            directory = find_backup(paths.resolve(p['dest'], 'dest', BackupError), instance, p['backup_id'])
        else:
            raise BackupError('set dest (with backup_id) or backup_path to say which backup to restore')
        manifest = verify_backup(directory, checksums=True)
        if manifest['instance'] != instance:
            raise BackupError('backup %s is of instance %s, not %s: restoring it here would mix instances'
                              % (directory, manifest['instance'], instance))
        exe = p['exe'] or os.path.join(path, 'anqicms')
        running = self.running_of(exe)
        if running and not p['force']:
            raise BackupError('instance %s runs (PIDs %s of %s); nothing was changed: stop it first '
                              '(opsguard.anqicms.graceful_stop) or set force=true' % (instance, running, exe))
        return directory, manifest, running

    def plan(self, manifest: dict, path: str) -> tuple:
        """(the sites to restore, per site what is restored where)."""
        p = self.p
        sites = manifest['sites']
        if p['sites'] is not None:
            unknown = sorted(set(p['sites']) - set(s['id'] for s in sites))
            if unknown:
                raise BackupError('sites %s are not in backup %s (it has %s)' % (unknown, manifest['id'], [s['id'] for s in sites]))
            sites = [s for s in sites if s['id'] in p['sites']]
        token = self.token
        plan = []
        for site in sites:
            root = path if site['id'] == 1 else site['root']
            files_art = next((a for a in manifest['artifacts'] if a['name'] == site.get('files_artifact')), {})
            restore_db = p['databases'] and site.get('db_artifact') is not None and \
                not (site.get('db_shared_with') and any(s['id'] == site['db_shared_with'] for s in sites))
            restore_files = p['files'] and site.get('files_artifact') is not None
            plan.append({'site': site['id'], 'database': site['database'] if restore_db else None,
                         'staging_database': derived_name(site['database'], 'new', token) if restore_db else None,
                         'root': root if restore_files else None, 'items': (files_art.get('items') or []) if restore_files else [],
                         'staging_dir': os.path.join(root, '.opsguard-new-' + token) if restore_files else None})
        return sites, plan

    def _run(self, check_mode: bool) -> dict:
        p = self.p
        path = paths.resolve(p['path'], 'path', BackupError)
        instance = p['instance'] or os.path.basename(path)
        if not instance or instance.startswith('.'):
            raise BackupError('the base name of path %s (%r) is no instance name; set instance:' % (path, instance))
        directory, manifest, running = self._locate(path, instance)
        sites, plan = self.plan(manifest, path)
        result = {'changed': False, 'backup_id': manifest['id'], 'backup_path': directory, 'plan': plan, 'running': running}
        if check_mode:
            result['changed'] = True
            result['msg'] = 'backup %s verified; would restore %d site(s) of %s' % (manifest['id'], len(sites), instance)
            return result

        # 1. Stage files and databases (nothing live is touched yet); side by side when the credentials are known.
        stage_dirs: dict = {}
        staged_db: dict = {}
        jobs = []
        if any(step['database'] for step in plan):
            jobs.append((self.stage_databases, directory, manifest, sites, plan, path, stage_dirs, staged_db))
        if any(step['root'] for step in plan):
            jobs.append((self.stage_files, directory, sites, plan, stage_dirs))
        if len(jobs) == 2 and default_connection(path, {}) is None:
            # The credentials come from the backup's config.json: files first.
            self.stage_files(directory, sites, plan, stage_dirs)
            self.stage_databases(directory, manifest, sites, plan, path, stage_dirs, staged_db)
        else:
            in_parallel(*jobs)

        # 2. Swap everything in.
        db_results, file_results = self.swap(sites, plan, stage_dirs, staged_db)

        # 3. Done: clean up staging, optionally the previous state. From here on nothing is undone.
        self.journal.steps = []
        try:
            self.clean_up(sites, stage_dirs, staged_db, db_results, file_results)
        except (MysqlError, OSError) as exc:
            raise BackupError('backup %s of %s was restored (every swap is done and stays), but cleaning up afterwards failed: %s; '
                              'remove what is left by hand: staging databases %s, staging directories %s'
                              % (manifest['id'], instance, exc, sorted(s[2] for s in staged_db.values()) or 'none',
                                 sorted(stage_dirs.values()) or 'none')) from None
        result.update({'changed': True, 'databases': db_results, 'files': file_results,
                       'msg': 'restored backup %s of %s (%d site(s))' % (manifest['id'], instance, len(sites))})
        return result

    def stage_files(self, directory: str, sites: list, plan: list, stage_dirs: dict) -> None:
        for site, step in zip(sites, plan):
            root = step['root']
            if root is None:
                continue
            if not os.path.isdir(root):
                os.makedirs(root, mode=0o755)
                self.journal.add('mkdir', path=root)
            stage = step['staging_dir']
            os.mkdir(stage, 0o700)
            self.journal.add('mkdir', path=stage)
            extract_files(os.path.join(directory, site['files_artifact']), stage)
            stage_dirs[site['id']] = stage

    def client_for(self, conn: dict) -> tuple:
        p = self.p
        login = {'user': p.get('login_user'), 'password': p.get('login_password'), 'host': p.get('login_host'),
                 'port': p.get('login_port'), 'socket': p.get('login_unix_socket')}
        c = connection(conn, login)
        key = repr(sorted(c.items()))
        if key not in self.clients:
            self.clients[key] = self.client_factory(c, timeout=p['timeout'])
        return self.clients[key], key

    def stage_databases(self, directory: str, manifest: dict, sites: list, plan: list, path: str, stage_dirs: dict,
                        staged_db: dict) -> None:
        p = self.p
        default = default_connection(path, stage_dirs)
        if default is None and not p['login_user']:
            raise BackupError('no usable config.json in %s or in the backup, and no login_user: the database credentials '
                              'are unknown' % path)
        default = default or {'database': sites[0]['database'], 'user': None, 'password': None, 'host': '127.0.0.1', 'port': 3306}
        site_rows: list = []
        for site, step in zip(sites, plan):
            if step['database'] is None:
                continue
            if site['id'] == 1 or not site_rows:
                conn = dict(default, database=site['database'])
            else:
                conn = next((s['conn'] for s in discover_sites(site_rows, default, path) if s['id'] == site['id']), None)
                conn = conn or dict(default, database=site['database'])
            client, key = self.client_for(conn)
            staging = step['staging_database']
            try:
                # Journalled only once it exists: a CREATE refused (wrong credentials, no grant) is never "undone".
                create_database(client, key, staging, self.journal, drop_contents=True)
            except MysqlError as exc:
                raise BackupError('creating staging database %s for site %d failed: %s' % (staging, site['id'], exc)) from None
            try:
                load_dump(client.client_cmd(batch=False), os.path.join(directory, site['db_artifact']), timeout=p['timeout'],
                          prefix=('USE %s;\n' % quote_ident(staging)).encode('utf-8'), pass_fds=client.pass_fds)
            except BackupError as exc:
                raise BackupError('loading the dump of site %d into staging database %s failed: %s' % (site['id'], staging, exc)) from None
            info = client.schema_info([staging])[staging]
            extra = dict((k, v) for k, v in info['objects'].items() if v)
            if extra:
                raise BackupError('the dump of %s holds %s, which RENAME TABLE cannot move between databases; restore it '
                                  'by hand from %s' % (site['database'], extra, site['db_artifact']))
            if p['check_tables'] and site.get('tables') is not None and \
                    client.server_version() == (manifest.get('db_server') or {}).get('version'):
                stats = client.table_stats(staging)
                if stats != site['tables']:
                    diff = sorted(t for t in set(stats) | set(site['tables']) if stats.get(t) != site['tables'].get(t))
                    raise BackupError('staged database of site %d differs from the verified backup in tables %s' % (site['id'], diff))
            if site['id'] == 1 and 'websites' in info['tables']:
                site_rows = client.query(SITES_SQL, database=staging)
            staged_db[site['id']] = (client, key, staging)

    def swap(self, sites: list, plan: list, stage_dirs: dict, staged_db: dict) -> tuple:
        """Every staged database and then every staged root swapped in, each step journalled."""
        db_results = []
        for site in sites:
            if site['id'] in staged_db:
                client, key, staging = staged_db[site['id']]
                db_results.append(swap_tables(client, key, site['database'], staging,
                                              derived_name(site['database'], 'old', self.token), self.journal))
        file_results = []
        for site, step in zip(sites, plan):
            if site['id'] in stage_dirs:
                old = os.path.join(step['root'], '.opsguard-old-' + self.token)
                os.mkdir(old, 0o700)
                self.journal.add('mkdir', path=old)
                file_results.append(swap_items(step['root'], stage_dirs[site['id']], old, KEEP_ITEMS, self.journal))
        return db_results, file_results

    def clean_up(self, sites: list, stage_dirs: dict, staged_db: dict, db_results: list, file_results: list) -> None:
        """Remove staging; remove the previous state too unless keep_previous."""
        for stage in stage_dirs.values():
            shutil.rmtree(stage, ignore_errors=True)
        for fr in file_results:
            if fr['previous'] is None:
                shutil.rmtree(os.path.join(fr['root'], '.opsguard-old-' + self.token), ignore_errors=True)
            elif not self.p['keep_previous']:
                shutil.rmtree(fr['previous'])
        for dr, site in zip(db_results, [s for s in sites if s['id'] in staged_db]):
            client, dummy, staging = staged_db[site['id']]
            drops = ['DROP DATABASE IF EXISTS %s;' % quote_ident(staging)]
            if dr['previous'] and not self.p['keep_previous']:
                drops.append('DROP DATABASE %s;' % quote_ident(dr['previous']))
            client.run_sql('\n'.join(drops))
