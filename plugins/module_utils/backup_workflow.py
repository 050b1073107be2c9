# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup of every site of an AnQiCMS instance: discover, dump and archive, verify, publish atomically, retain.

:class:`Backup` takes the module's (already validated) parameters. The database client and the check whether the
instance runs are injected, so tests drive the whole workflow with fakes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid

from ansible_collections.opsguard.anqicms.plugins.module_utils import paths
from ansible_collections.opsguard.anqicms.plugins.module_utils.anqicms_instance import (
    SITES_SQL, connection, discover_sites, read_instance_config, running_pids,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_options import path_problems
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_partials import (
    claim_partial, clean_stale_partials, release_partial,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_retention import apply_retention
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import (
    FORMAT, KEEP_ITEMS, PARTIAL_PREFIX, BackupError, disk_error, fsync_dir, hostname, in_parallel, iso,
    new_backup_id, now_utc, write_manifest,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_streams import archive_files, dump_database, load_dump
from ansible_collections.opsguard.anqicms.plugins.module_utils.mysql_client import MysqlClient, MysqlError
from ansible_collections.opsguard.anqicms.plugins.module_utils.sql import quote_ident

# Scratch databases of verify=true: this prefix and 12 hex digits (the grants of a dedicated account match it).
SCRATCH_PREFIX = 'opsguard_verify_'


def app_version(port: int, running: list) -> str | None:
    """Version reported by the running instance on loopback (one bounded request), else None.

    The port is the instance's ``-port`` flag when it was started with one, else config.json's.
    """
    if not running:
        return None
    try:
        with open('/proc/%d/cmdline' % running[0], 'rb') as handle:
            args = handle.read().decode('utf-8', 'replace').split('\0')
        for flag in ('-port', '--port'):
            if flag in args[:-1]:
                port = int(args[args.index(flag) + 1])
    except (OSError, ValueError):
        pass
    from ansible.module_utils.urls import open_url  # pylint: disable=import-outside-toplevel

    try:
        with open_url('http://127.0.0.1:%d/system/api/version/info' % port, timeout=3, follow_redirects='none') as resp:
            data = json.loads(resp.read(65536).decode('utf-8'))
        return str((data.get('data') or {}).get('version') or '') or None
    except Exception:  # pylint: disable=broad-except
        return None


def inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip('/') + '/')


def dump_site(client, site: dict, dest: str, timeout: int) -> dict:
    return dump_database(client.dump_cmd(site['database']), dest, timeout=timeout, pass_fds=client.pass_fds)


def scratch_stats(client, artifact: str, timeout: int) -> dict:
    """Load a dump into a scratch database, return its table stats, drop it."""
    scratch = SCRATCH_PREFIX + uuid.uuid4().hex[:12]
    client.run_sql('CREATE DATABASE %s;' % quote_ident(scratch))
    try:
        load_dump(client.client_cmd(scratch, batch=False), artifact, timeout=timeout, pass_fds=client.pass_fds)
        return client.table_stats(scratch)
    finally:
        client.run_sql('DROP DATABASE IF EXISTS %s;' % quote_ident(scratch))


def retention_result(retention: dict) -> dict:
    return {'removed': retention['removed'], 'damaged': retention['damaged'],
            'retention_check': {'backups': retention['checked'], 'bytes': retention['checked_bytes'],
                                'seconds': retention['check_seconds']}}


class Backup(object):
    """One backup task. ``report`` holds what is known so far (sites, running, partials), also when it fails.

    ``client_factory(conn, timeout=...)`` makes a database client (:class:`MysqlClient` or a fake with the same
    methods); ``running(exe)`` lists the PIDs running the instance; ``warn(text)`` reports a warning.
    """

    def __init__(self, params: dict, client_factory=MysqlClient, running=running_pids, warn=None, app_version_of=app_version) -> None:
        self.p = params
        self.client_factory = client_factory
        self.running_of = running
        self.warn = warn or (lambda text: None)
        self.app_version_of = app_version_of
        self.report: dict = {}
        self.clients: dict = {}

    def client_for(self, conn: dict, login: dict):
        c = connection(conn, login)
        key = (c.get('user'), c.get('host'), c.get('port'), c.get('socket'), c.get('password'))
        if key not in self.clients:
            self.clients[key] = self.client_factory(c, timeout=self.p['timeout'])
        return self.clients[key]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients = {}

    def run(self, check_mode: bool = False) -> dict:
        """Back up (or, in check mode, say what would be done); raise BackupError/MysqlError/OSError on failure."""
        try:
            return self._run(check_mode)
        finally:
            self.close()

    def _discover(self, path: str, instance: str, default: dict, login: dict) -> tuple:
        """(database server version, the sites to back up, the instance's backup directory), all checked."""
        p = self.p
        main_client = self.client_for(default, login)
        try:
            rows = main_client.query('SELECT VERSION(), 0, 0, 0, 0;\n' + SITES_SQL, database=default['database'])
        except MysqlError as exc:
            raise BackupError('cannot read the sites of instance %s from database %s (%s): is the database server up and '
                              'are the credentials in %s/config.json right?' % (instance, default['database'], exc, path)) from None
        db_version = rows[0][0] if rows else ''
        sites = discover_sites(rows[1:], default, path)
        if p['sites']:
            unknown = sorted(set(p['sites']) - set(s['id'] for s in sites))
            if unknown:
                raise BackupError('sites %s are not in the websites table of %s (known: %s)'
                                  % (unknown, default['database'], [s['id'] for s in sites]))
            sites = [s for s in sites if s['id'] in p['sites']]
        instance_dir = os.path.join(paths.resolve(p['dest'], 'dest', BackupError), instance)
        for site in sites:
            bad_root = path_problems('root_path', site['root'])
            if bad_root or not os.path.isdir(site['root']):
                raise BackupError('site %d (%s) has root_path %r, which is not a directory: the site is broken; repair it or '
                                  'leave it out with sites:' % (site['id'], site['name'], site['root'][:200]))
            for item in KEEP_ITEMS:
                kept = paths.resolve(os.path.join(site['root'], item), 'site %d root_path entry' % site['id'], BackupError)
                if inside(paths.resolve(instance_dir, 'dest', BackupError), kept):
                    raise BackupError('the backups would go to %s, inside %s, which the backup of site %d archives: '
                                      'choose a dest outside the site roots' % (instance_dir, kept, site['id']))
        return db_version, sites, instance_dir

    def _run(self, check_mode: bool) -> dict:
        p = self.p
        started = now_utc()
        t0 = time.monotonic()
        path = paths.resolve(p['path'], 'path', BackupError)
        instance = p['instance'] or os.path.basename(path)
        exe = p['exe'] or os.path.join(path, 'anqicms')
        login = {'user': p.get('login_user'), 'password': p.get('login_password'), 'host': p.get('login_host'),
                 'port': p.get('login_port'), 'socket': p.get('login_unix_socket')}
        default = read_instance_config(path)
        running = self.running_of(exe)
        if p['cold'] and running:
            raise BackupError('a cold backup of %s was asked for, but the instance runs (PIDs %s of %s): stop it first '
                              '(opsguard.anqicms.graceful_stop) or take a hot backup' % (instance, running, exe))
        db_version, sites, instance_dir = self._discover(path, instance, default, login)
        result = self.report
        public_sites = [{'id': s['id'], 'name': s['name'], 'database': s['database'], 'root': s['root']} for s in sites]
        result.update({'changed': False, 'sites': public_sites, 'running': running, 'removed': [], 'damaged': []})
        backup_id = new_backup_id(started)
        if check_mode:
            partials = clean_stale_partials(instance_dir, check_mode=True)
            result.update({'stale_partials_removed': partials['removed'], 'partials_left': partials['left']})
            retention = apply_retention(instance_dir, instance, p['keep'], p['keep_days'], started, check_mode=True, new_id=backup_id)
            result.update(retention_result(retention))
            result['msg'] = 'would back up %d site(s) of %s into %s' % (len(sites), instance, instance_dir)
            return result

        os.makedirs(instance_dir, mode=0o700, exist_ok=True)
        partials = clean_stale_partials(instance_dir)
        result.update({'stale_partials_removed': partials['removed'], 'partials_left': partials['left'],
                       'changed': bool(partials['removed'])})
        if partials['removed']:
            self.warn('removed %d partial backup(s) of %s left by backups that were killed: %s'
                      % (len(partials['removed']), instance, ', '.join(partials['removed'])))
        final = os.path.join(instance_dir, backup_id)
        manifest = {
            'format': FORMAT, 'id': backup_id, 'instance': instance, 'host': hostname(), 'path': path,
            'mode': 'cold' if p['cold'] else 'hot', 'started': iso(started),
            'db_server': {'version': db_version}, 'verified': bool(p['verify']), 'complete': True,
        }
        artifacts, minfo = self.publish(instance_dir, backup_id, sites, login, manifest,
                                        lambda: {'exe': paths.resolve(exe, 'exe', BackupError), 'running': running,
                                                 'version': self.app_version_of(default['server_port'], running)})
        # The age rule is judged at the time the task started, as check mode judges it: both name the same backups.
        retention = apply_retention(instance_dir, instance, p['keep'], p['keep_days'], started, new_id=backup_id)
        for error in retention['errors']:
            self.warn(error)
        result.update(retention_result(retention))
        result.update({
            'changed': True, 'backup_id': backup_id, 'backup_path': final, 'artifacts': artifacts,
            'total_size': sum(a['size'] for a in artifacts) + minfo['size'], 'duration': round(time.monotonic() - t0, 3),
            'msg': 'backed up %d site(s) of %s into %s' % (len(sites), instance, final),
        })
        return result

    def publish(self, instance_dir: str, backup_id: str, sites: list, login: dict, manifest: dict, app) -> tuple:
        """Write every artifact and the manifest under ``.partial-<id>``, then rename it to ``<id>``.

        On any failure the partial directory is removed. Returns (artifacts, size and sha256 of the manifest).
        """
        partial = os.path.join(instance_dir, PARTIAL_PREFIX + backup_id)
        lock = claim_partial(partial)
        try:
            artifacts, manifest_sites = self.write_sites(partial, sites, login)
            manifest = dict(manifest, finished=iso(now_utc()), app=app(), sites=manifest_sites, artifacts=artifacts)
            release_partial(lock)
            minfo = write_manifest(partial, manifest)
            fsync_dir(partial)
            os.rename(partial, os.path.join(instance_dir, backup_id))
            fsync_dir(instance_dir)
        except OSError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise disk_error(exc, instance_dir) from None
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        finally:
            os.close(lock)
        return artifacts, minfo

    def write_sites(self, partial: str, sites: list, login: dict) -> tuple:
        """Dump and archive each site into ``partial`` (a database shared by sites once); verify when asked."""
        p = self.p
        artifacts: list = []
        manifest_sites: list = []
        dumped: dict = {}
        for site in sites:
            client = self.client_for(site['conn'], login)
            db_key = (id(client), site['database'])
            db_name = dumped.get(db_key) or 'site%d-db.sql.gz' % site['id']
            files_name = 'site%d-files.tar.gz' % site['id']
            calls = [(archive_files, site['root'], os.path.join(partial, files_name))]
            if db_key not in dumped:
                # The dump (its own process plus compression here) and the files archive run side by side.
                calls.insert(0, (dump_site, client, site, os.path.join(partial, db_name), p['timeout']))
            try:
                done = in_parallel(*calls)
            except BackupError as exc:
                raise BackupError('backup of site %d (database %s, root %s) failed: %s'
                                  % (site['id'], site['database'], site['root'], exc)) from None
            finfo = done[-1]
            if db_key not in dumped:
                info = done[0]
                dumped[db_key] = db_name
                artifacts.append({'name': db_name, 'kind': 'db', 'site': site['id'], 'size': info['size'],
                                  'sha256': info['sha256'], 'sql_size': info['raw_size']})
            artifacts.append({'name': files_name, 'kind': 'files', 'site': site['id'], 'size': finfo['size'],
                              'sha256': finfo['sha256'], 'items': finfo['items']})
            if finfo['changed_while_read']:
                self.warn('site %d: files changed while they were archived (hot backup): %s'
                          % (site['id'], finfo['changed_while_read'][:500]))
            entry = {'id': site['id'], 'name': site['name'], 'root': site['root'], 'database': site['database'],
                     'db_artifact': db_name, 'files_artifact': files_name}
            shared = [e for e in manifest_sites if e['db_artifact'] == db_name]
            if shared:
                # Two sites on one database: dumped once, restored once.
                entry['db_shared_with'] = shared[0]['id']
                entry['tables'] = shared[0].get('tables')
            elif p['verify']:
                entry['tables'] = self.verify_dump(client, site, os.path.join(partial, db_name))
            manifest_sites.append(entry)
        return artifacts, manifest_sites

    def verify_dump(self, client, site: dict, artifact: str) -> dict:
        """Table stats of the dump loaded into a scratch database; with compare_live, equal to the live database's."""
        stats = scratch_stats(client, artifact, self.p['timeout'])
        if self.p['compare_live']:
            live = client.table_stats(site['database'])
            if live != stats:
                diff = sorted(t for t in set(live) | set(stats) if live.get(t) != stats.get(t))
                raise BackupError('verification of site %d: the restored copy of %s differs from the live database '
                                  'in tables %s (row counts or CHECKSUM TABLE)' % (site['id'], site['database'], diff))
        return stats
