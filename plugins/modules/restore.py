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
  - >-
    The database server may be another host (O(login_host), O(login_port)): every connection then goes there over
    TCP. An account other than the instance's own needs every privilege on each database of the instance and on
    C(<first 40 characters of the database>_opsg_%) (the staging and previous databases), nothing global. For
    C(anqicms_www) used from 10.0.0.12, C(GRANT ALL PRIVILEGES ON `anqicms\_www`.* TO 'opsguard_restore'@'10.0.0.12')
    and C(GRANT ALL PRIVILEGES ON `anqicms\_www\_opsg\_%`.* TO 'opsguard_restore'@'10.0.0.12').
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
  record:
    description:
      - Write the record of the restore (C(ACTION=restore), C(OUTCOME=restored) or V(failed)) to the host's journal
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
      - Why the restore is done, for the record. At most 1024 characters.
    type: str
    default: ''
attributes:
  check_mode:
    support: full
    details:
      - Verifies the backup and reports the plan (databases and directories that would be swapped).
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run that is not in check mode swaps the data in again.
  platform:
    platforms: posix
    support: partial
    details: Linux only (reads /proc to tell whether the instance runs).
extends_documentation_fragment:
  - opsguard.anqicms.attributes
  - opsguard.anqicms.attributes.platform
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
recorded:
  description:
    - What was recorded (O(record)). C(journal) (bool) and C(journal_error); C(webhook) (V(delivered), V(failed) or
      V(off)), C(webhook_error), C(webhook_attempts), C(webhook_target) (C(scheme://host:port) only); C(seconds) (what recording took); C(fields), the
      record (C(ACTION=restore), C(INSTANCE), C(OUTCOME), C(REASON), C(HOST), C(TIME), C(PATH), C(BACKUP_ID), C(SITES), C(DURATION), C(ROLLED_BACK), C(ERROR)).
  returned: always
  type: dict
  sample: {journal: true, journal_error: null, webhook: "off", webhook_error: null, webhook_attempts: 0,
           fields: {ACTION: restore, INSTANCE: shop, OUTCOME: restored}}
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
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.opsguard.anqicms.plugins.module_utils import record
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_options import restore_option_problems
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import hostname, show_value
from ansible_collections.opsguard.anqicms.plugins.module_utils.mysql_client import MysqlClient, login_argument_spec
from ansible_collections.opsguard.anqicms.plugins.module_utils.options import new_module
from ansible_collections.opsguard.anqicms.plugins.module_utils.restore_workflow import Restore, RestoreFailed

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
    record=dict(type='bool', default=True),
    notify_url=dict(type='str', no_log=True),
    record_reason=dict(type='str', default=''),
    **login_argument_spec()
)


def build_module() -> AnsibleModule:
    """The AnsibleModule; an infinite value for an integer option is refused with a message (see new_module)."""
    return new_module(ARGUMENT_SPEC, 'restore', required_one_of=[('dest', 'backup_path')],
                      mutually_exclusive=[('login_host', 'login_unix_socket'), ('dest', 'backup_path')], supports_check_mode=True)


def main() -> None:
    module = build_module()
    problems = restore_option_problems(module.params) + record.option_problems(module.params)
    if problems:
        module.fail_json(msg='restore of %s on %s refused, nothing was touched: %s'
                         % (show_value(module.params['path']), hostname(), '; '.join(problems)))
    p = module.params
    where = 'restore of %s on %s' % (p['path'], hostname())
    instance = p['instance'] or os.path.basename(os.path.normpath(p['path']))
    fields = {'path': p['path'], 'backup_id': p['backup_id'] if p['backup_path'] is None else os.path.basename(p['backup_path'].rstrip('/')),
              'sites': p['sites']}
    started = time.monotonic()
    try:
        result = Restore(p, client_factory=MysqlClient).run(check_mode=module.check_mode)
    except RestoreFailed as exc:
        fields.update(duration=round(time.monotonic() - started, 3), rolled_back=exc.rolled_back or None, error=exc.message(where))
        recorded = record.for_module(p, 'restore', instance, 'failed', fields, module.check_mode)
        module.fail_json(msg=exc.message(where), rolled_back=exc.rolled_back, rollback_problems=exc.problems, exception=exc.tb,
                         recorded=recorded)
    fields.update(backup_id=result.get('backup_id') or fields['backup_id'], duration=round(time.monotonic() - started, 3))
    result['recorded'] = record.for_module(p, 'restore', instance, 'restored', fields, module.check_mode)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
