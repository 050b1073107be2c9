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
  record:
    description:
      - Write the record of the backup (C(ACTION=backup), C(OUTCOME=backed_up) or V(failed)) to the host's journal
        (C(SYSLOG_IDENTIFIER=opsguard)) and, with O(notify_url), POST it to a webhook; docs/records.md of the collection
        has the fields and the JSON. Nothing is recorded in check mode.
      - A host without journald or a webhook that is down never fails the task; RV(recorded) says what happened.
    type: bool
    default: true
  notify_url:
    description:
      - An C(http://) or C(https://) URL the record is POSTed to (at most 3 tries within 5 seconds, certificates
        verified). It may carry a token; it is never shown in a message or a result. Checked before anything else.
    type: str
  record_reason:
    description:
      - Why the backup is done, for the record. At most 1024 characters.
    type: str
    default: ''
attributes:
  check_mode:
    support: full
    details:
      - Discovers the sites and reports what would be backed up, which backups retention would remove (the new backup
        counted, existing ones verified as in a real run) and which stale partial directories would be removed.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run that is not in check mode takes a new backup.
  platform:
    platforms: posix
    support: partial
    details: Linux only (reads /proc to tell whether the instance runs).
extends_documentation_fragment:
  - opsguard.anqicms.attributes
  - opsguard.anqicms.attributes.platform
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
recorded:
  description:
    - What was recorded (O(record)). C(journal) (bool) and C(journal_error); C(webhook) (V(delivered), V(failed) or
      V(off)), C(webhook_error), C(webhook_attempts), C(webhook_target) (C(scheme://host:port) only); C(seconds) (what recording took); C(fields), the
      record (C(ACTION=backup), C(INSTANCE), C(OUTCOME), C(REASON), C(HOST), C(TIME), C(PATH), C(BACKUP_ID), C(COLD), C(SIZE), C(DURATION), C(ERROR)).
  returned: always
  type: dict
  sample: {journal: true, journal_error: null, webhook: "off", webhook_error: null, webhook_attempts: 0,
           fields: {ACTION: backup, INSTANCE: shop, OUTCOME: backed_up}}
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

import os
import time
import traceback

from ansible_collections.opsguard.anqicms.plugins.module_utils import record
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_options import backup_option_problems
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import BackupError, hostname
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_workflow import Backup
from ansible_collections.opsguard.anqicms.plugins.module_utils.mysql_client import MysqlClient, MysqlError, login_argument_spec
from ansible_collections.opsguard.anqicms.plugins.module_utils.options import new_module
from ansible_collections.opsguard.anqicms.plugins.module_utils.sql import SqlError


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
            record=dict(type='bool', default=True),
            notify_url=dict(type='str', no_log=True),
            record_reason=dict(type='str', default=''),
            **login_argument_spec()
        ),
        'backup',
        mutually_exclusive=[('login_host', 'login_unix_socket')],
        supports_check_mode=True,
    )
    problems = backup_option_problems(module.params) + record.option_problems(module.params)
    if problems:
        module.fail_json(msg='backup refused on %s, nothing was done: %s' % (hostname(), '; '.join(problems)))
    p = module.params
    instance = p['instance'] or os.path.basename(os.path.normpath(p['path']))
    fields = {'path': p['path'], 'cold': p['cold']}
    started = time.monotonic()
    backup = Backup(p, client_factory=MysqlClient, warn=module.warn)
    try:
        result = backup.run(check_mode=module.check_mode)
    except (BackupError, MysqlError, SqlError, OSError) as exc:
        backup.report.pop('msg', None)
        msg = 'backup of %s on %s failed: %s' % (p['path'], hostname(), exc)
        fields.update(duration=round(time.monotonic() - started, 3), error=msg)
        extra = {} if isinstance(exc, (BackupError, MysqlError, SqlError)) else {'exception': traceback.format_exc()}
        module.fail_json(msg=msg, recorded=record.for_module(p, 'backup', instance, 'failed', fields, module.check_mode),
                         **dict(backup.report, **extra))
    fields.update(backup_id=result.get('backup_id'), size=result.get('total_size'), duration=result.get('duration'))
    result['recorded'] = record.for_module(p, 'backup', instance, 'backed_up', fields, module.check_mode)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
