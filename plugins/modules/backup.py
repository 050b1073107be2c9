#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: backup
short_description: Verified backup of every site of an AnQiCMS instance (databases and files)
version_added: 0.1.0
description:
  - Discovers the sites of an AnQiCMS instance from the C(websites) table of its default database, with the
    credentials read from the instance's C(config.json).
  - Dumps each site's database with C(mariadb-dump) (or C(mysqldump)) using
    C(--single-transaction --quick --routines --triggers --hex-blob), compressing and hashing the stream in the
    module itself, so the dump's exit status, every write and the dump's completion trailer are each checked.
  - Archives each site root's kept data (C(config.json), C(template/), C(public/), C(data/), C(cache/.history));
    the regenerable rest of C(cache/) and the release files are not archived.
  - Writes C(manifest.json) last (instance, sites, databases, artifacts with size and sha256, application and
    database versions, host, times) and only then makes the backup visible by renaming it from a hidden
    C(.partial-<id>) name to C(<dest>/<instance>/<id>). On any failure the partial directory is removed.
  - Credentials reach the clients through an anonymous in-memory file (C(memfd), mode 0600) inherited as
    C(--defaults-file=/dev/fd/N), never a file on disk, never on a command line; it vanishes with the module, even
    when the module is killed.
  - Every option is checked (type, range, NaN, infinity, NUL bytes, path length) before any work; a refused task
    has contacted no database, created no directory and deleted nothing.
  - The partial directory is locked (C(flock)) and holds an owner record (PID, its start time, boot ID, host) while the
    backup runs. Each backup first removes the C(.partial-*) directories of its instance that no process holds and whose
    owner is proven dead (PID gone or reused, or an earlier boot), and reports them; anything else is left and reported.
  - Applies retention (O(keep) and/or O(keep_days)) after a successful backup. Retention checks the sha256 of every
    artifact of the backups it counts or deletes; a damaged backup is reported in RV(damaged), never counted as kept
    and never deleted, so at least O(keep) backups that pass verification stay.
author:
  - opsguard contributors (@opsguard)
requirements:
  - C(mariadb-dump) or C(mysqldump), and C(mariadb) or C(mysql) on the target.
options:
  path:
    description:
      - Install directory of the instance (the directory of its binary and C(config.json)); the root of site 1.
    type: path
    required: true
  instance:
    description:
      - Name of the instance, used as the directory under O(dest). Defaults to the base name of O(path).
      - One path component of at most 255 bytes, not starting with a dot, without control characters.
    type: str
  dest:
    description:
      - Directory that holds the backups, one subdirectory per instance. Created (mode 0700) if missing.
      - An absolute path. Refused when it lies inside what a site's backup archives (for example C(public/) of a site root).
    type: path
    required: true
  exe:
    description:
      - Executable of the instance, used to establish whether it runs (a process whose resolved C(/proc/PID/exe) is it).
      - Defaults to C(anqicms) in O(path).
    type: path
  sites:
    description:
      - IDs of the sites to back up. Default is every site of the C(websites) table.
      - Positive IDs; an empty list is refused (omit the option to back up every site).
    type: list
    elements: int
  cold:
    description:
      - Record the backup as taken cold. The module then refuses to run while the instance runs.
      - It never stops the instance itself; the C(opsguard.anqicms.backup) playbook does that with O(cold=true).
    type: bool
    default: false
  verify:
    description:
      - Load every dump into a scratch database on the same server, record each table's row count and
        C(CHECKSUM TABLE) in the manifest, and drop the scratch database again.
      - M(opsguard.anqicms.restore) compares a restore against these numbers before it swaps anything in.
    type: bool
    default: false
  compare_live:
    description:
      - With O(verify=true), also require the live databases to have the same row counts and checksums as the
        scratch copies. Only meaningful for a cold backup; a hot backup of a busy site differs by design.
    type: bool
    default: false
  keep:
    description:
      - Keep the newest this many backups of the instance that pass verification (sha256 of every artifact). From 1 to 100000.
      - A damaged backup does not count and is not deleted; it is reported in RV(damaged).
    type: int
  keep_days:
    description:
      - Keep every complete backup younger than this many days (age from its ID, at the time the task started).
      - A finite number from 0 to 36500; NaN and infinities are refused.
      - With O(keep) as well, a backup is kept when either rule keeps it. The newest backup that passes verification
        always stays.
    type: float
  timeout:
    description:
      - Limit in seconds for each dump and each scratch load. From 1 to 604800 (7 days).
    type: int
    default: 3600
attributes:
  check_mode:
    support: full
    details:
      - Discovers the sites and reports what would be backed up, which backups retention would remove (the new backup
        counted, existing ones verified as in a real run) and which stale partial directories would be removed.
  diff_mode:
    support: none
  idempotent:
    description: Whether a second run with the same options changes nothing.
    support: none
    details:
      - Every run that is not in check mode takes a new backup.
  platform:
    platforms: posix
    support: partial
    details: Linux only (reads /proc to tell whether the instance runs).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - opsguard.anqicms.mysql_login
seealso:
  - module: opsguard.anqicms.restore
  - module: community.mysql.mysql_db
    description: Dumps one database; neither checks the dump nor archives files.
'''

EXAMPLES = r'''
- name: Hot backup of every site of the instance, keep 7 and anything from the last 3 days
  opsguard.anqicms.backup:
    path: /opt/anqicms/shop
    dest: /var/backups/anqicms
    keep: 7
    keep_days: 3

- name: Verified backup as root through the socket
  opsguard.anqicms.backup:
    path: /opt/anqicms/shop
    dest: /var/backups/anqicms
    verify: true
    login_user: root
    login_unix_socket: /run/mysqld/mysqld.sock
'''

RETURN = r'''
backup_id:
  description: ID of the new backup (UTC time stamp).
  returned: success, not in check mode
  type: str
  sample: 20260101T030000123456Z
backup_path:
  description: Directory of the new backup.
  returned: success, not in check mode
  type: str
  sample: /var/backups/anqicms/shop/20260101T030000123456Z
sites:
  description: The sites backed up, with their database and root (no credentials).
  returned: always
  type: list
  elements: dict
  sample: [{"id": 1, "name": "shop", "database": "anqicms", "root": "/opt/anqicms/shop"}]
artifacts:
  description: Files of the backup with size and sha256.
  returned: success, not in check mode
  type: list
  elements: dict
  sample: [{"name": "site1-db.sql.gz", "size": 1234, "sha256": "9f86...", "kind": "db", "site": 1}]
total_size:
  description: Bytes of all artifacts and the manifest.
  returned: success, not in check mode
  type: int
  sample: 123456
removed:
  description: IDs of older backups removed (or, in check mode, that would be removed) by retention.
  returned: always
  type: list
  elements: str
  sample: [20251201T030000000000Z]
damaged:
  description:
    - Backups of the instance that failed verification (checksums, when retention checked them; a missing or unreadable
      manifest, always). Never counted as kept, never deleted.
  returned: success
  type: list
  elements: dict
  sample: [{"id": "20251202T030000000000Z", "error": "backup ... failed verification: site1-db.sql.gz has sha256 ..."}]
retention_check:
  description: What verifying backups for retention cost in this run.
  returned: success
  type: dict
  contains:
    backups:
      description: Backups whose checksums were checked.
      type: int
    bytes:
      description: Bytes read to check them.
      type: int
    seconds:
      description: Seconds retention took, checks included.
      type: float
  sample: {"backups": 7, "bytes": 438000000, "seconds": 0.9}
stale_partials_removed:
  description: C(.partial-*) directories of killed backups of this instance removed (in check mode, that would be removed).
  returned: success
  type: list
  elements: str
  sample: [.partial-20251203T030000000000Z]
partials_left:
  description: C(.partial-*) directories that were left, with the reason (a backup still writes it, no owner record, ...).
  returned: success
  type: list
  elements: dict
  sample: [{"name": ".partial-20251203T030000000000Z", "reason": "a backup is still writing it (it holds its lock)"}]
running:
  description: PIDs of processes running the instance's executable when the backup started.
  returned: always
  type: list
  elements: int
  sample: [1234]
duration:
  description: Seconds the backup took.
  returned: success, not in check mode
  type: float
  sample: 3.2
'''

import json
import os
import shutil
import time
import traceback
import uuid

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup import (
    FORMAT,
    PARTIAL_PREFIX,
    SITES_SQL,
    KEEP_ITEMS,
    MAX_TIMEOUT,
    BackupError,
    apply_retention,
    archive_files,
    claim_partial,
    clean_stale_partials,
    connection,
    disk_error,
    discover_sites,
    dump_database,
    fsync_dir,
    hostname,
    in_parallel,
    int_problems,
    iso,
    load_dump,
    name_problems,
    new_backup_id,
    now_utc,
    path_problems,
    read_instance_config,
    release_partial,
    retention_problems,
    running_pids,
    write_manifest,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils.mysql_client import (
    MysqlClient, MysqlError, login_argument_spec, login_from_params, quote_ident,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils.options import new_module


def app_version(port: int, running: list) -> str | None:
    """Version reported by the running instance on loopback (one bounded request), else None.

    The port is the instance's C(-port) flag when it was started with one, else config.json's.
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


def dump_site(client: MysqlClient, site: dict, dest: str, timeout: int) -> dict:
    return dump_database(client.dump_cmd(site['database']), dest, timeout=timeout, pass_fds=client.pass_fds)


def scratch_stats(client: MysqlClient, artifact: str, timeout: int) -> dict:
    """Load a dump into a scratch database, return its table stats, drop it."""
    scratch = 'opsguard_verify_%s' % uuid.uuid4().hex[:12]
    client.run_sql('CREATE DATABASE %s;' % quote_ident(scratch))
    try:
        load_dump(client.client_cmd(scratch, batch=False), artifact, timeout=timeout, pass_fds=client.pass_fds)
        return client.table_stats(scratch)
    finally:
        client.run_sql('DROP DATABASE IF EXISTS %s;' % quote_ident(scratch))


def option_problems(p: dict) -> list:
    """Every problem with the options, found before any work (nothing read from the database, nothing written)."""
    problems = []
    for option in ('path', 'dest', 'exe', 'login_unix_socket'):
        problems += path_problems(option, p.get(option))
    for option in ('login_user', 'login_host'):
        if isinstance(p.get(option), str) and ('\0' in p[option] or '\n' in p[option] or '\r' in p[option]):
            problems.append('%s contains a NUL byte or a line break; got %r' % (option, p[option][:100]))
    if isinstance(p.get('login_password'), str) and ('\0' in p['login_password'] or '\n' in p['login_password']
                                                     or '\r' in p['login_password']):
        problems.append('login_password contains a NUL byte or a line break, which no client option file can carry')
    if p.get('instance') is not None:
        problems += name_problems('instance', p['instance'])
    problems += retention_problems(p.get('keep'), p.get('keep_days'))
    problems += int_problems('timeout', p.get('timeout'), 1, MAX_TIMEOUT, ' seconds')
    problems += int_problems('login_port', p.get('login_port'), 1, 65535)
    if p.get('sites') is not None:
        if not p['sites']:
            problems.append('sites is an empty list, which would back up nothing; omit sites to back up every site')
        for site in p['sites']:
            problems += int_problems('sites entry', site, 1, 2 ** 64 - 1, ' (an ID of the websites table)')
    if p.get('compare_live') and not p.get('verify'):
        problems.append('compare_live=true needs verify=true: the live databases are compared with the verified scratch copies')
    if problems:
        return problems
    path = os.path.realpath(p['path'])
    if os.path.lexists(path) and not os.path.isdir(path):
        problems.append('path %s is not a directory: give the install directory of the instance' % p['path'])
    if p.get('instance') is None:
        problems += name_problems('instance (the base name of path)', os.path.basename(path))
    dest = os.path.realpath(p['dest'])
    if os.path.lexists(dest) and not os.path.isdir(dest):
        problems.append('dest %s exists and is not a directory' % p['dest'])
    elif not problems:
        instance_dir = os.path.join(dest, p.get('instance') or os.path.basename(path))
        if os.path.lexists(instance_dir) and not os.path.isdir(instance_dir):
            problems.append('%s (dest/instance) exists and is not a directory' % instance_dir)
    return problems


def inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip('/') + '/')


def run(module: AnsibleModule, report: dict) -> dict:
    p = module.params
    started = now_utc()
    t0 = time.monotonic()
    path = os.path.realpath(p['path'])
    instance = p['instance'] or os.path.basename(path)
    exe = p['exe'] or os.path.join(path, 'anqicms')
    login = login_from_params(p)
    default = read_instance_config(path)
    running = running_pids(exe)
    if p['cold'] and running:
        raise BackupError('a cold backup of %s was asked for, but the instance runs (PIDs %s of %s): stop it first '
                          '(opsguard.anqicms.graceful_stop) or take a hot backup' % (instance, running, exe))
    clients: dict = {}

    def client_for(conn: dict) -> MysqlClient:
        c = connection(conn, login)
        key = (c.get('user'), c.get('host'), c.get('port'), c.get('socket'), c.get('password'))
        if key not in clients:
            clients[key] = MysqlClient(c, timeout=p['timeout'])
        return clients[key]

    try:
        main_client = client_for(default)
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
        instance_dir = os.path.join(os.path.realpath(p['dest']), instance)
        for site in sites:
            bad_root = path_problems('root_path', site['root'])
            if bad_root or not os.path.isdir(site['root']):
                raise BackupError('site %d (%s) has root_path %r, which is not a directory: the site is broken; repair it or '
                                  'leave it out with sites:' % (site['id'], site['name'], site['root'][:200]))
            for item in KEEP_ITEMS:
                kept = os.path.realpath(os.path.join(site['root'], item))
                if inside(os.path.realpath(instance_dir), kept):
                    raise BackupError('the backups would go to %s, inside %s, which the backup of site %d archives: '
                                      'choose a dest outside the site roots' % (instance_dir, kept, site['id']))
        public_sites = [{'id': s['id'], 'name': s['name'], 'database': s['database'], 'root': s['root']} for s in sites]
        result = report
        result.update({'changed': False, 'sites': public_sites, 'running': running, 'removed': [], 'damaged': []})
        backup_id = new_backup_id(started)
        if module.check_mode:
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
            module.warn('removed %d partial backup(s) of %s left by backups that were killed: %s'
                        % (len(partials['removed']), instance, ', '.join(partials['removed'])))
        partial = os.path.join(instance_dir, PARTIAL_PREFIX + backup_id)
        final = os.path.join(instance_dir, backup_id)
        lock = claim_partial(partial)
        try:
            artifacts = []
            manifest_sites = []
            dumped: dict = {}
            for site in sites:
                client = client_for(site['conn'])
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
                    module.warn('site %d: files changed while they were archived (hot backup): %s'
                                % (site['id'], finfo['changed_while_read'][:500]))
                entry = {'id': site['id'], 'name': site['name'], 'root': site['root'], 'database': site['database'],
                         'db_artifact': db_name, 'files_artifact': files_name}
                shared = [e for e in manifest_sites if e['db_artifact'] == db_name]
                if shared:
                    # Two sites on one database: dumped once, restored once.
                    entry['db_shared_with'] = shared[0]['id']
                    entry['tables'] = shared[0].get('tables')
                elif p['verify']:
                    stats = scratch_stats(client, os.path.join(partial, db_name), p['timeout'])
                    entry['tables'] = stats
                    if p['compare_live']:
                        live = client.table_stats(site['database'])
                        if live != stats:
                            diff = sorted(t for t in set(live) | set(stats) if live.get(t) != stats.get(t))
                            raise BackupError('verification of site %d: the restored copy of %s differs from the live database '
                                              'in tables %s (row counts or CHECKSUM TABLE)' % (site['id'], site['database'], diff))
                manifest_sites.append(entry)
            finished = now_utc()
            manifest = {
                'format': FORMAT, 'id': backup_id, 'instance': instance, 'host': hostname(), 'path': path,
                'mode': 'cold' if p['cold'] else 'hot', 'started': iso(started), 'finished': iso(finished),
                'app': {'exe': os.path.realpath(exe), 'version': app_version(default['server_port'], running), 'running': running},
                'db_server': {'version': db_version}, 'verified': bool(p['verify']),
                'sites': manifest_sites, 'artifacts': artifacts, 'complete': True,
            }
            release_partial(lock)
            minfo = write_manifest(partial, manifest)
            fsync_dir(partial)
            os.rename(partial, final)
            fsync_dir(instance_dir)
        except OSError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise disk_error(exc, instance_dir) from None
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        finally:
            os.close(lock)
        # The age rule is judged at the time the task started, as check mode judges it: both name the same backups.
        retention = apply_retention(instance_dir, instance, p['keep'], p['keep_days'], started, new_id=backup_id)
        for error in retention['errors']:
            module.warn(error)
        result.update(retention_result(retention))
        result.update({
            'changed': True, 'backup_id': backup_id, 'backup_path': final, 'artifacts': artifacts,
            'total_size': sum(a['size'] for a in artifacts) + minfo['size'], 'duration': round(time.monotonic() - t0, 3),
            'msg': 'backed up %d site(s) of %s into %s' % (len(sites), instance, final),
        })
        return result
    finally:
        for c in clients.values():
            c.close()


def retention_result(retention: dict) -> dict:
    return {'removed': retention['removed'], 'damaged': retention['damaged'],
            'retention_check': {'backups': retention['checked'], 'bytes': retention['checked_bytes'],
                                'seconds': retention['check_seconds']}}


def main() -> None:
    module = new_module(
        dict(
            path=dict(type='path', required=True),
            instance=dict(type='str'),
            dest=dict(type='path', required=True),
            exe=dict(type='path'),
            sites=dict(type='list', elements='int'),
            cold=dict(type='bool', default=False),
            verify=dict(type='bool', default=False),
            compare_live=dict(type='bool', default=False),
            keep=dict(type='int'),
            keep_days=dict(type='float'),
            timeout=dict(type='int', default=3600),
            **login_argument_spec()
        ),
        'backup',
        mutually_exclusive=[('login_host', 'login_unix_socket')],
        supports_check_mode=True,
    )
    problems = option_problems(module.params)
    if problems:
        module.fail_json(msg='backup refused on %s, nothing was done: %s' % (hostname(), '; '.join(problems)))
    report: dict = {}
    try:
        result = run(module, report)
    except (BackupError, MysqlError) as exc:
        report.pop('msg', None)
        module.fail_json(msg='backup of %s on %s failed: %s' % (module.params['path'], hostname(), exc), **report)
    except OSError as exc:
        report.pop('msg', None)
        module.fail_json(msg='backup of %s on %s failed: %s' % (module.params['path'], hostname(), exc),
                         exception=traceback.format_exc(), **report)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
