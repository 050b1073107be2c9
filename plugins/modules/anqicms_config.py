#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) opsguard.anqicms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: anqicms_config
short_description: Manage settings in an AnQiCMS config.json without fighting the application
version_added: 1.0.0
description:
  - Sets the C(mysql) and C(server) settings of an AnQiCMS instance in its C(config.json).
  - Compares the parsed JSON, not the bytes. AnQiCMS rewrites the file itself (tab-indented, in its own key
    order, on the web install and on every start with C(MYSQL_*) environment variables); such a rewrite with
    the same values is not a change.
  - Keys the task does not name are kept as they are.
  - When the file has to be written, it is written the way AnQiCMS writes it (Go C(json.MarshalIndent) with a
    tab indent, HTML-safe string escaping, no trailing newline), through a temporary file and an atomic rename.
  - A file that is not a JSON object is never overwritten; the module fails and says so.
author:
  - opsguard contributors (@opsguard)
options:
  path:
    description:
      - Path of the instance's C(config.json). AnQiCMS reads it from the directory of its resolved executable.
    type: path
    required: true
  mysql:
    description:
      - Database connection of the default site. Suboptions left unset are not managed.
    type: dict
    suboptions:
      database:
        description: Database name.
        type: str
      user:
        description: Database user.
        type: str
      password:
        description: Password of O(mysql.user). Never shown in output or diffs.
        type: str
      host:
        description: Database host.
        type: str
      port:
        description: Database port.
        type: int
      use_default:
        description: Whether AnQiCMS uses its default database settings.
        type: bool
  server:
    description:
      - Server settings. Suboptions left unset are not managed.
    type: dict
    suboptions:
      env:
        description: V(production), or V(development) to reload templates on every request.
        type: str
      port:
        description: HTTP port. The C(-port) command line flag overrides it.
        type: int
      log_level:
        description: Log level.
        type: str
  settings:
    description:
      - Further keys, deep-merged into the document after O(mysql) and O(server).
      - AnQiCMS 3.5.8 drops keys it does not know when it rewrites the file, so keys outside C(mysql) and
        C(server) do not survive the application's next rewrite.
    type: dict
  create:
    description:
      - Create the file when it does not exist. When V(false), a missing file is an error.
    type: bool
    default: true
  backup:
    description:
      - Keep a timestamped copy of the previous file when it is changed.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.files
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reports the keys that would change and writes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The document before and after, passwords replaced by C(********); file attribute changes.
  idempotent:
    description: When run twice in a row, the second run reports no change.
    support: full
    details: Values are compared after parsing, so a rewrite by AnQiCMS with the same values is not a change.
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
seealso:
  - name: AnQiCMS
    description: The content management system whose configuration this module manages.
    link: https://www.anqicms.com/
'''

EXAMPLES = r'''
- name: Point the instance at its database and port
  opsguard.anqicms.anqicms_config:
    path: /opt/anqicms/site1/config.json
    mysql:
      database: anqicms_site1
      user: anqicms_site1
      password: "{{ vault_site1_db_password }}"
      host: 127.0.0.1
      port: 3306
    server:
      env: production
      port: 8001
    owner: anqicms
    group: anqicms
    mode: "0600"

- name: Only the port, keep everything else
  opsguard.anqicms.anqicms_config:
    path: /opt/anqicms/site1/config.json
    server:
      port: 8002
    create: false
'''

RETURN = r'''
path:
  description: Path of the file.
  returned: always
  type: str
  sample: /opt/anqicms/site1/config.json
changed_keys:
  description: Dotted names of the settings whose value was (or, in check mode, would be) changed.
  returned: always
  type: list
  elements: str
  sample: [mysql.password, server.port]
config:
  description: The resulting document, passwords masked.
  returned: always
  type: dict
  sample: {"mysql": {"database": "anqicms", "password": "********"}, "server": {"port": 8001}}
created:
  description: Whether the file did not exist before.
  returned: always
  type: bool
  sample: false
backup_file:
  description: Path of the backup copy.
  returned: when O(backup=true) and the file was changed
  type: str
  sample: /opt/anqicms/site1/config.json.12345.2026-01-01@00:00:00~
'''

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text

from ansible_collections.opsguard.anqicms.plugins.module_utils.anqicms_config import (
    ConfigError,
    mask_secrets,
    plan_update,
    render_config,
)


def read_text(module: AnsibleModule, path: str) -> str | None:
    if not os.path.exists(path):
        return None
    if not os.path.isfile(path):
        module.fail_json(msg='%s exists but is not a regular file; it was left untouched: remove it or fix the path' % path, path=path)
    try:
        with open(path, 'rb') as handle:
            return to_text(handle.read(), errors='surrogate_or_strict')
    except (OSError, UnicodeError) as exc:
        module.fail_json(msg='cannot read %s: %s; check the path and its permissions' % (path, to_native(exc)), path=path)
    return None


def write_atomic(module: AnsibleModule, path: str, content: str) -> None:
    directory = os.path.dirname(path) or '.'
    if not os.path.isdir(directory):
        module.fail_json(msg='directory %s of %s does not exist; create the instance directory first' % (directory, path), path=path)
    fd, tmp = tempfile.mkstemp(prefix='.config.json.', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(to_bytes(content, errors='surrogate_or_strict'))
            handle.flush()
            os.fsync(handle.fileno())
        module.atomic_move(tmp, path, unsafe_writes=module.params['unsafe_writes'])
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            mysql=dict(
                type='dict',
                options=dict(
                    database=dict(type='str'),
                    user=dict(type='str'),
                    password=dict(type='str', no_log=True),
                    host=dict(type='str'),
                    port=dict(type='int'),
                    use_default=dict(type='bool'),
                ),
            ),
            server=dict(
                type='dict',
                options=dict(
                    env=dict(type='str'),
                    port=dict(type='int'),
                    log_level=dict(type='str'),
                ),
            ),
            settings=dict(type='dict'),
            create=dict(type='bool', default=True),
            backup=dict(type='bool', default=False),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    path = module.params['path']
    text = read_text(module, path)
    if text is None and not module.params['create']:
        module.fail_json(msg='%s does not exist and create=false; install the instance first or set create=true' % path, path=path)

    desired: dict = {}
    if module.params['settings']:
        desired.update(module.params['settings'])
    for section in ('mysql', 'server'):
        if module.params[section]:
            merged_section = dict(desired.get(section) or {})
            merged_section.update((k, v) for k, v in module.params[section].items() if v is not None)
            desired[section] = merged_section

    try:
        plan = plan_update(text, desired, path)
    except ConfigError as exc:
        module.fail_json(msg=to_native(exc), path=path)

    result: dict = {
        'changed': plan['needs_write'],
        'path': path,
        'changed_keys': plan['changed_keys'],
        'config': mask_secrets(plan['merged']),
        'created': text is None,
    }
    diffs: list = []
    if module._diff and plan['needs_write']:
        diffs.append({
            'before_header': path,
            'after_header': path,
            'before': render_config(mask_secrets(plan['current'])) + '\n' if text is not None else '',
            'after': render_config(mask_secrets(plan['merged'])) + '\n',
        })

    if plan['needs_write'] and not module.check_mode:
        if module.params['backup'] and text is not None:
            result['backup_file'] = module.backup_local(path)
        write_atomic(module, path, plan['content'])

    if os.path.exists(path):
        file_args = module.load_file_common_arguments(module.params)
        attr_diff: dict = {'before': {}, 'after': {}}
        result['changed'] = module.set_fs_attributes_if_different(file_args, result['changed'], attr_diff)
        if module._diff and (attr_diff['before'] or attr_diff['after']):
            diffs.append(attr_diff)
    elif module.check_mode and any(module.params[key] for key in ('owner', 'group', 'mode')):
        result['changed'] = True
    if diffs:
        result['diff'] = diffs
    module.exit_json(**result)


if __name__ == '__main__':
    main()
