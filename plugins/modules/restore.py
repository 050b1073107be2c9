#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: restore
short_description: Restore an AnQiCMS backup with verification first, atomic swaps and rollback
version_added: 0.1.0
description:
  - Restores a backup written by M(opsguard.anqicms.backup).
  - Verifies the manifest and the size and sha256 of every artifact B(before touching anything); a damaged
    backup is refused and the live data stays as it is.
  - The manifest is untrusted input, so its whole schema is checked first (type and range of every field used, site
    IDs, database names, absolute normalised site roots with no C(..), plain artifact names, sha256 format, sizes).
    A refusal names the backup directory and the field, for example C(manifest field sites[0].root).
  - Every option is checked before anything else (absolute paths without NUL bytes, O(timeout) and O(login_port)
    ranges, finite integers); a refusal names the option and the value and touches nothing.
  - Refuses while the instance runs (a process whose resolved C(/proc/PID/exe) is the instance's executable),
    unless O(force=true).
  - Loads each site's dump into a staging database, checks it against the row counts and C(CHECKSUM TABLE)
    recorded by a verified backup, then swaps it in with one C(RENAME TABLE) per site; the previous tables move
    into a database named C(<db>_opsg_old_<token>).
  - Extracts each site's files into a staging directory inside the site root and swaps the kept items
    (C(config.json), C(template/), C(public/), C(data/), C(cache/.history)) in by rename; the previous items
    move into C(<root>/.opsguard-old-<token>/).
  - On any failure every step done is undone, in reverse order, and the result says what happened.
  - Credentials reach the clients through an anonymous in-memory file (C(memfd), mode 0600) inherited as
    C(--defaults-file=/dev/fd/N), never a file on disk, never on a command line; it vanishes with the module, even
    when the module is killed.
author:
  - opsguard contributors (@opsguard)
requirements:
  - C(mariadb) or C(mysql) client on the target; MariaDB or MySQL with C(RENAME TABLE) across databases.
options:
  path:
    description:
      - Install directory of the instance (the root of site 1). An absolute path, not C(/).
    type: path
    required: true
  instance:
    description:
      - Name of the instance. Defaults to the base name of O(path). Must match the manifest's instance.
      - A directory name of 1 to 255 characters, without C(/), not starting with C(.).
    type: str
  dest:
    description:
      - Directory that holds the backups (as for M(opsguard.anqicms.backup)). Needed unless O(backup_path) is set;
        mutually exclusive with it. An absolute path.
    type: path
  backup_id:
    description:
      - ID of the backup to restore (C(YYYYmmddTHHMMSS[ffffff]Z)), or V(latest) for the newest backup under O(dest).
      - V(latest) is the newest backup by ID, never an older one in its place. If the newest one is damaged (no
        manifest, an invalid or incomplete manifest, another instance's, a checksum mismatch), the task fails naming
        it; name an older backup explicitly to restore that one. C(.partial-*) directories of unfinished backups
        are not backups and are ignored.
    type: str
    default: latest
  backup_path:
    description:
      - Directory of the backup to restore, instead of O(dest) and O(backup_id). An absolute path.
    type: path
  exe:
    description:
      - Executable of the instance. Defaults to C(anqicms) in O(path). An absolute path.
    type: path
  sites:
    description:
      - IDs of the sites to restore (positive integers). Default is every site in the backup.
      - An empty list is refused rather than read as "every site".
    type: list
    elements: int
  databases:
    description:
      - Restore the databases.
    type: bool
    default: true
  files:
    description:
      - Restore the files.
    type: bool
    default: true
  force:
    description:
      - Restore even while the instance runs. The running application then sees its data change under it.
    type: bool
    default: false
  keep_previous:
    description:
      - Keep the previous databases and files (for a manual rollback). When V(false) they are deleted after a
        successful restore.
    type: bool
    default: true
  check_tables:
    description:
      - Compare each staged database with the row counts and C(CHECKSUM TABLE) recorded in the manifest of a
        verified backup before swapping it in. Only done when the database server's version is the one recorded.
    type: bool
    default: true
  timeout:
    description:
      - Limit in seconds for loading each dump and for each database client call, from 1 to 604800 (7 days).
    type: int
    default: 3600
attributes:
  check_mode:
    support: full
    details:
      - Verifies the backup and reports the plan (databases and directories that would be swapped).
  diff_mode:
    support: none
  idempotent:
    description: Whether a second run with the same options changes nothing.
    support: none
    details:
      - Every run that is not in check mode swaps the data in again.
  platform:
    platforms: posix
    support: partial
    details: Linux only (reads /proc to tell whether the instance runs).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - opsguard.anqicms.mysql_login
seealso:
  - module: opsguard.anqicms.backup
'''

EXAMPLES = r'''
- name: Restore the newest backup of the instance
  opsguard.anqicms.restore:
    path: /opt/anqicms/shop
    dest: /var/backups/anqicms
    backup_id: latest
    login_user: root
    login_unix_socket: /run/mysqld/mysqld.sock

- name: Show what a restore would do
  opsguard.anqicms.restore:
    path: /opt/anqicms/shop
    backup_path: /var/backups/anqicms/shop/20260101T030000123456Z
  check_mode: true
'''

RETURN = r'''
backup_id:
  description: ID of the backup restored.
  returned: when the backup was found
  type: str
  sample: 20260101T030000123456Z
backup_path:
  description: Directory of the backup.
  returned: when the backup was found
  type: str
  sample: /var/backups/anqicms/shop/20260101T030000123456Z
plan:
  description: Per site, the database and directory swaps done (or, in check mode, that would be done).
  returned: always
  type: list
  elements: dict
  sample: [{"site": 1, "database": "anqicms", "root": "/opt/anqicms/shop", "items": ["config.json", "public"]}]
databases:
  description: Per site, the database swapped in and where the previous tables went.
  returned: success, not in check mode
  type: list
  elements: dict
  sample: [{"database": "anqicms", "previous": "anqicms_opsg_old_1a2b3c", "tables": 5, "previous_tables": 5}]
files:
  description: Per site, the items swapped in and where the previous ones went.
  returned: success, not in check mode
  type: list
  elements: dict
  sample: [{"root": "/opt/anqicms/shop", "restored": ["public"], "previous": "/opt/anqicms/shop/.opsguard-old-1a2b3c"}]
rolled_back:
  description: Steps undone after a failure.
  returned: on failure after something was changed
  type: list
  elements: str
  sample: ["undone: table swap into anqicms"]
running:
  description: PIDs running the instance's executable.
  returned: always
  type: list
  elements: int
  sample: []
'''

import os
import shutil
import traceback
import uuid

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup import (
    ID_RE,
    KEEP_ITEMS,
    MAX_TIMEOUT,
    SITES_SQL,
    BackupError,
    connection,
    discover_sites,
    extract_files,
    find_backup,
    hostname,
    in_parallel,
    load_dump,
    read_instance_config,
    running_pids,
    show_value,
    verify_backup,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_restore import (
    Journal, create_database, derived_name, swap_items, swap_tables,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils.mysql_client import (
    MysqlClient, MysqlError, defaults_text, login_argument_spec, login_from_params, quote_ident,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils.options import new_module

MAX_PATH = 4096


class RestoreError(Exception):
    def __init__(self, msg: str, rolled_back: list | None = None) -> None:
        super().__init__(msg)
        self.rolled_back = rolled_back or []


def option_problems(p: dict) -> list:
    """Every problem with the options, each naming the option, the value and what is expected. Touches nothing."""
    problems = []
    for name in ('path', 'dest', 'backup_path', 'exe'):
        value = p.get(name)
        if value is None and name != 'path':
            continue
        if not isinstance(value, str) or not value.startswith('/') or '\0' in value or len(value) > MAX_PATH:
            problems.append('%s=%s must be an absolute path (no NUL byte, at most %d characters)' % (name, show_value(value), MAX_PATH))
    if isinstance(p.get('path'), str) and p['path'].startswith('/') and os.path.normpath(p['path']) == '/':
        problems.append('path=/ is not an AnQiCMS install directory')
    instance = p.get('instance')
    if instance is not None and (not instance or '/' in instance or instance.startswith('.') or '\0' in instance
                                 or len(instance) > 255):
        problems.append('instance=%s must be a directory name (1-255 characters, no "/", not starting with ".")' % show_value(instance))
    if p.get('backup_path') is None:
        backup_id = p.get('backup_id')
        if not isinstance(backup_id, str) or (backup_id != 'latest' and not ID_RE.fullmatch(backup_id)):
            problems.append("backup_id=%s must be 'latest' or a backup ID of the form YYYYmmddTHHMMSS[ffffff]Z" % show_value(backup_id))
    if p.get('sites') is not None:
        if not p['sites']:
            problems.append('sites=[] names no site: leave sites out to restore every site of the backup')
        bad = [s for s in p['sites'] if not 1 <= s <= 2 ** 63 - 1]
        if bad:
            problems.append('sites=%s: site IDs are positive integers, got %s' % (show_value(p['sites']), show_value(bad)))
    timeout = p.get('timeout')
    if not 1 <= timeout <= MAX_TIMEOUT:
        problems.append('timeout=%s must be from 1 to %d seconds (7 days)' % (show_value(timeout), MAX_TIMEOUT))
    port = p.get('login_port')
    if port is not None and not 1 <= port <= 65535:
        problems.append('login_port=%s must be a TCP port from 1 to 65535' % show_value(port))
    for name in ('login_user', 'login_host', 'login_unix_socket', 'login_password'):
        value = p.get(name)
        if value is None:
            continue
        shown = '(hidden)' if name == 'login_password' else show_value(value)
        if '\0' in value or '\n' in value or '\r' in value:
            problems.append('%s=%s must not contain a NUL byte or a line break' % (name, shown))
        elif len(value) > MAX_PATH:
            problems.append('%s=%s is longer than %d characters' % (name, shown, MAX_PATH))
    if not problems:
        try:
            defaults_text(login_from_params(p))
        except MysqlError as exc:
            problems.append(str(exc))
    return problems


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


def run(module: AnsibleModule, journal: Journal, clients: dict) -> dict:
    p = module.params
    path = os.path.realpath(p['path'])
    instance = p['instance'] or os.path.basename(path)
    if not instance or instance.startswith('.'):
        raise BackupError('the base name of path %s (%r) is no instance name; set instance:' % (path, instance))
    if p['backup_path']:
        directory = os.path.realpath(p['backup_path'])
    elif p['dest']:
        directory = find_backup(os.path.realpath(p['dest']), instance, p['backup_id'])
    else:
        raise BackupError('set dest (with backup_id) or backup_path to say which backup to restore')
    manifest = verify_backup(directory, checksums=True)
    if manifest['instance'] != instance:
        raise BackupError('backup %s is of instance %s, not %s: restoring it here would mix instances'
                          % (directory, manifest['instance'], instance))
    exe = p['exe'] or os.path.join(path, 'anqicms')
    running = running_pids(exe)
    if running and not p['force']:
        raise BackupError('instance %s runs (PIDs %s of %s); nothing was changed: stop it first '
                          '(opsguard.anqicms.graceful_stop) or set force=true' % (instance, running, exe))
    sites = manifest['sites']
    if p['sites'] is not None:
        unknown = sorted(set(p['sites']) - set(s['id'] for s in sites))
        if unknown:
            raise BackupError('sites %s are not in backup %s (it has %s)' % (unknown, manifest['id'], [s['id'] for s in sites]))
        sites = [s for s in sites if s['id'] in p['sites']]
    token = uuid.uuid4().hex[:8]
    login = login_from_params(p)
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
    result = {'changed': False, 'backup_id': manifest['id'], 'backup_path': directory, 'plan': plan, 'running': running}
    if module.check_mode:
        result['changed'] = True
        result['msg'] = 'backup %s verified; would restore %d site(s) of %s' % (manifest['id'], len(sites), instance)
        return result

    # 1. Stage files and databases (nothing live is touched yet); side by side when the credentials are known.
    stage_dirs: dict = {}
    staged_db: dict = {}

    def stage_files() -> None:
        for site, step in zip(sites, plan):
            root = step['root']
            if root is None:
                continue
            if not os.path.isdir(root):
                os.makedirs(root, mode=0o755)
                journal.add('mkdir', path=root)
            stage = step['staging_dir']
            os.mkdir(stage, 0o700)
            journal.add('mkdir', path=stage)
            extract_files(os.path.join(directory, site['files_artifact']), stage)
            stage_dirs[site['id']] = stage

    def stage_databases() -> None:
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
            c = connection(conn, login)
            key = repr(sorted(c.items()))
            if key not in clients:
                clients[key] = MysqlClient(c, timeout=p['timeout'])
            client = clients[key]
            staging = step['staging_database']
            try:
                # Journalled only once it exists: a CREATE refused (wrong credentials, no grant) is never "undone".
                create_database(client, key, staging, journal, drop_contents=True)
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

    jobs = []
    if any(step['database'] for step in plan):
        jobs.append((stage_databases,))
    if any(step['root'] for step in plan):
        jobs.append((stage_files,))
    if len(jobs) == 2 and default_connection(path, {}) is None:
        # The credentials come from the backup's config.json: files first.
        stage_files()
        stage_databases()
    else:
        in_parallel(*jobs)

    # 3. Swap everything in.
    db_results = []
    for site, step in zip(sites, plan):
        if site['id'] in staged_db:
            client, key, staging = staged_db[site['id']]
            db_results.append(swap_tables(client, key, site['database'], staging, derived_name(site['database'], 'old', token), journal))
    file_results = []
    for site, step in zip(sites, plan):
        if site['id'] in stage_dirs:
            old = os.path.join(step['root'], '.opsguard-old-' + token)
            os.mkdir(old, 0o700)
            journal.add('mkdir', path=old)
            file_results.append(swap_items(step['root'], stage_dirs[site['id']], old, KEEP_ITEMS, journal))

    # 4. Done: clean up staging, optionally the previous state. From here on nothing is undone.
    journal.steps = []
    for site_id, stage in stage_dirs.items():
        shutil.rmtree(stage, ignore_errors=True)
    for fr in file_results:
        if fr['previous'] is None:
            shutil.rmtree(os.path.join(fr['root'], '.opsguard-old-' + token), ignore_errors=True)
        elif not p['keep_previous']:
            shutil.rmtree(fr['previous'])
    for dr, site in zip(db_results, [s for s in sites if s['id'] in staged_db]):
        client, key, staging = staged_db[site['id']]
        drops = ['DROP DATABASE IF EXISTS %s;' % quote_ident(staging)]
        if dr['previous'] and not p['keep_previous']:
            drops.append('DROP DATABASE %s;' % quote_ident(dr['previous']))
        client.run_sql('\n'.join(drops))
    result.update({'changed': True, 'databases': db_results, 'files': file_results,
                   'msg': 'restored backup %s of %s (%d site(s))' % (manifest['id'], instance, len(sites))})
    return result


ARGUMENT_SPEC = dict(
    path=dict(type='path', required=True),
    instance=dict(type='str'),
    dest=dict(type='path'),
    backup_id=dict(type='str', default='latest'),
    backup_path=dict(type='path'),
    exe=dict(type='path'),
    sites=dict(type='list', elements='int'),
    databases=dict(type='bool', default=True),
    files=dict(type='bool', default=True),
    force=dict(type='bool', default=False),
    keep_previous=dict(type='bool', default=True),
    check_tables=dict(type='bool', default=True),
    timeout=dict(type='int', default=3600),
    **login_argument_spec()
)


def build_module() -> AnsibleModule:
    """The AnsibleModule; an infinite value for an integer option is refused with a message (see new_module)."""
    return new_module(ARGUMENT_SPEC, 'restore', required_one_of=[('dest', 'backup_path')],
                      mutually_exclusive=[('login_host', 'login_unix_socket'), ('dest', 'backup_path')], supports_check_mode=True)


def main() -> None:
    module = build_module()
    problems = option_problems(module.params)
    if problems:
        module.fail_json(msg='restore of %s on %s refused, nothing was touched: %s'
                         % (show_value(module.params['path']), hostname(), '; '.join(problems)))
    journal = Journal()
    clients: dict = {}
    where = 'restore of %s on %s' % (module.params['path'], hostname())
    try:
        try:
            result = run(module, journal, clients)
        except Exception as exc:  # pylint: disable=broad-except
            # Whatever failed, undo exactly the steps done; unexpected errors keep their traceback.
            changed = bool(journal.steps)
            problems = journal.rollback(clients)
            tb = None if isinstance(exc, (BackupError, MysqlError)) else traceback.format_exc()
            if problems:
                msg = '%s failed: %s; ROLLBACK INCOMPLETE: %s' % (where, exc, '; '.join(problems))
            elif changed:
                msg = '%s failed: %s; every step was undone, the previous state is back' % (where, exc)
            else:
                msg = '%s failed: %s' % (where, exc)
            module.fail_json(msg=msg, rolled_back=journal.log, rollback_problems=problems, exception=tb)
    finally:
        for c in clients.values():
            c.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
