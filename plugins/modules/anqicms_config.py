#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) opsguard.anqicms contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: anqicms_config
short_description: Manage settings in an AnQiCMS config.json without fighting the application
version_added: 0.1.0
description:
  - Sets the C(mysql) and C(server) settings of an AnQiCMS instance in its C(config.json).
  - Compares the parsed JSON, not the bytes. AnQiCMS rewrites the file itself (tab-indented, in its own key
    order, on the web install and on every start with C(MYSQL_*) environment variables); such a rewrite with
    the same values is not a change.
  - Keys the task does not name are kept as they are.
  - When the file has to be written, it is written the way AnQiCMS writes it (Go C(json.MarshalIndent) with a
    tab indent, HTML-safe string escaping, no trailing newline), through a temporary file and an atomic rename.
  - A file that is not a JSON object is never overwritten; the module fails and says so.
  - Everything is validated before anything is written, in check mode as in a real run. Refused without touching
    the file are a file AnQiCMS could not parse (invalid UTF-8, a byte order mark, C(NaN)/C(Infinity) or numbers out of
    range, duplicate keys, more than 1 MiB or nested more than 32 levels), a file whose C(mysql)/C(server) values
    AnQiCMS could not decode (for example C(server.port) as a string or C(8001.0)) unless the task sets that value,
    which replaces it, and keys that differ from C(mysql), C(server) or their settings only in case (AnQiCMS matches
    keys case-insensitively).
  - An empty file (what a kill during the application's own truncating write leaves) is treated as an empty
    document and written.
  - A symbolic link at O(path) is followed; the file it points to is read, written and given the file attributes,
    the link stays. A link to nothing or to something that is not a regular file is refused.
  - A new file is created with mode C(0600) unless O(mode) says otherwise; it is never readable by others, not even
    between creation and O(mode) being applied. An existing file keeps its mode, with a warning when it is readable
    by every user.
  - The value of every key whose name says password or secret (C(password), C(passwd), C(*_pass), C(secret),
    C(token), C(api_key), C(private_key), C(credential); at any depth, in the file, in O(mysql) or in O(settings))
    is masked in the result and in diffs, and a secret given in O(settings) is kept out of the logged invocation.
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
        description: Database name, at most 64 characters, no control characters.
        type: str
      user:
        description: Database user, at most 80 characters, no control characters.
        type: str
      password:
        description: Password of O(mysql.user), at most 4096 characters, no NUL. Never shown in output or diffs.
        type: str
      host:
        description: Database host, at most 255 characters, no control characters.
        type: str
      port:
        description: Database port, 1-65535.
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
        choices: [production, development]
      port:
        description: HTTP port, 1-65535. The C(-port) command line flag overrides it.
        type: int
      log_level:
        description: Log level, at most 32 characters, no control characters.
        type: str
  settings:
    description:
      - Further keys, deep-merged into the document after O(mysql) and O(server).
      - AnQiCMS 3.5.8 drops keys it does not know when it rewrites the file, so keys outside C(mysql) and
        C(server) do not survive the application's next rewrite.
      - Values must be JSON (no C(NaN) or infinite numbers, valid Unicode, at most 32 levels deep). C(settings.mysql) and
        C(settings.server) must be dictionaries, and their known keys are checked like the suboptions of O(mysql) and
        O(server).
      - Values under keys named like a password or secret are masked in the result and kept out of the logs.
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
  - opsguard.anqicms.attributes
  - opsguard.anqicms.attributes.platform
attributes:
  check_mode:
    support: full
    details: Reports the keys that would change and writes nothing; fails wherever a real run would fail (bad values, a
      bad file, a missing or unwritable directory, an invalid O(mode)). An O(owner)/O(group) that does not exist yet is
      a warning in check mode (an earlier task of the play creates it); the real run refuses it before writing.
  diff_mode:
    support: full
    details: The document before and after, passwords replaced by C(********); file attribute changes.
  idempotent:
    support: full
    details: Values are compared after parsing, so a rewrite by AnQiCMS with the same values is not a change.
  platform:
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

import grp
import os
import pwd
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible.module_utils.common.validation import check_type_dict

from ansible_collections.opsguard.anqicms.plugins.module_utils.anqicms_config import (
    MAX_FILE_BYTES,
    ConfigError,
    check_options,
    decode_config,
    desired_settings,
    is_secret_key,
    mask_secrets,
    plan_update,
    render_config,
    secret_values,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils import paths
from ansible_collections.opsguard.anqicms.plugins.module_utils.options import unconvertible_int


class ConfigModule(AnsibleModule):
    """AnsibleModule that keeps secrets given inside O(settings) out of the invocation log and the result,
    and refuses integer options that would crash ansible-core's type check."""

    bad_input: list

    def _load_params(self) -> None:
        super()._load_params()
        # Before validation, so that a validation failure, the invocation log and the result all mask them.
        settings = self.params.get('settings')
        if isinstance(settings, str):  # ansible-core turns JSON or k=v text into a dict; look at that dict
            try:
                settings = check_type_dict(settings)
            except (TypeError, ValueError):
                settings = {'secret': settings} if is_secret_key(settings) else None  # refused by ansible-core; hide it whole
        self.no_log_values.update(secret_values(settings))
        self.bad_input = []
        for section, spec in self.argument_spec.items():
            values = self.params.get(section)
            if not isinstance(values, dict) or not spec.get('options'):
                continue
            for key, option in spec['options'].items():
                if option.get('type') == 'int' and unconvertible_int(values.get(key)):
                    self.bad_input.append('%s.%s=%r is not an integer; expected a TCP port 1-65535' % (section, key, values[key]))
                    values[key] = None


def check_path(module: AnsibleModule, path: str) -> tuple[str, bool]:
    """Resolve ``path``: (the file to read and write, whether it exists). Fails on anything but a regular file."""
    if not path or '\x00' in path or path.endswith('/') or os.path.basename(path) in ('.', '..'):
        module.fail_json(msg='path=%r does not name a file; expected the path of the instance\'s config.json' % path, path=path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        module.fail_json(msg='cannot look at %s: %s; check the path and its permissions' % (path, to_native(exc)), path=path)
    real = path
    if st is not None and stat.S_ISLNK(st.st_mode):
        try:
            real = paths.resolve(path)
        except paths.UnresolvablePath as exc:
            module.fail_json(msg='%s is a symbolic link that cannot be followed (%s); it was left untouched' % (path, exc), path=path)
        try:
            st = os.stat(real)
        except OSError as exc:
            module.fail_json(msg='%s is a symbolic link to %s, which cannot be used (%s); it was left untouched: '
                                 'fix or remove the link' % (path, real, to_native(exc)), path=path)
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            shown = path if real == path else '%s (a link to %s)' % (path, real)
            module.fail_json(msg='%s exists but is not a regular file; it was left untouched: remove it or fix the path' % shown, path=path)
        return real, True
    directory = os.path.dirname(real) or '.'
    if not module.params['create']:
        module.fail_json(msg='%s does not exist and create=false; install the instance first or set create=true' % path, path=path)
    if not os.path.isdir(directory):
        module.fail_json(msg='directory %s of %s does not exist; create the instance directory first' % (directory, path), path=path)
    return real, False


def check_file_args(module: AnsibleModule) -> None:
    """Refuse owner/group/mode values that would fail only after the file was written."""
    mode = module.params['mode']
    if mode is not None:
        good = False
        if isinstance(mode, int) and not isinstance(mode, bool):
            good = 0 <= mode <= 0o7777
        elif isinstance(mode, str):
            try:
                good = 0 <= int(mode, 8) <= 0o7777
            except ValueError:
                try:
                    good = 0 <= module._symbolic_mode_to_octal(os.stat('/'), mode) <= 0o7777
                except Exception:  # pylint: disable=broad-except  # any error there means: not a symbolic mode
                    good = False
        if not good:
            module.fail_json(msg='mode=%r is not a file mode; expected octal like "0600" or symbolic like "u=rw,go="' % (mode,))
    for option, lookup, limit in (('owner', pwd.getpwnam, 2 ** 32 - 2), ('group', grp.getgrnam, 2 ** 32 - 2)):
        value = module.params[option]
        if value is None:
            continue
        try:
            number = int(value)
        except ValueError:
            try:
                lookup(value)
            except (KeyError, ValueError):
                kind = 'user' if option == 'owner' else 'group'
                if module.check_mode and len(value) <= 32 and '\x00' not in value:
                    # A play that creates the user in an earlier task has not created it in check mode.
                    module.warn('%s=%r is not a known %s on this host yet; a real run fails unless an earlier task creates it'
                                % (option, value, kind))
                    module.params[option] = None
                    continue
                module.fail_json(msg='%s=%r is not a known %s on this host; create it first or fix the name' % (option, value, kind))
        else:
            if not 0 <= number <= limit:
                module.fail_json(msg='%s=%r is out of range; expected a name or an id 0-%d' % (option, value, limit))


def read_bytes(module: AnsibleModule, path: str, real: str) -> bytes:
    try:
        with open(real, 'rb') as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        module.fail_json(msg='cannot read %s: %s; check the path and its permissions' % (path, to_native(exc)), path=path)
    return b''


def write_atomic(module: AnsibleModule, path: str, real: str, content: str) -> None:
    """Write through a temporary file and a rename; a new file is never readable by others, not even briefly."""
    directory = os.path.dirname(real) or '.'
    tmp = None
    old_umask = os.umask(0o077)
    try:
        fd, tmp = tempfile.mkstemp(prefix='.config.json.', dir=directory)
        with os.fdopen(fd, 'wb') as handle:
            handle.write(to_bytes(content, errors='strict'))
            handle.flush()
            os.fsync(handle.fileno())
        # atomic_move gives a new file the mode 0666 & ~umask: 0600 with the umask set above.
        module.atomic_move(tmp, real, unsafe_writes=module.params['unsafe_writes'])
    except Exception as exc:  # pylint: disable=broad-except  # atomic_move raises plain Exception
        module.fail_json(msg='cannot write %s: %s; check the directory, its permissions and free space' % (path, to_native(exc)), path=path)
    finally:
        os.umask(old_umask)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def main() -> None:
    module = ConfigModule(
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
                    env=dict(type='str', choices=['production', 'development']),
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

    # Everything is validated before anything is written, in check mode as in a real run.
    if module.bad_input:
        module.fail_json(msg='%s; nothing was changed' % module.bad_input[0], path=path)
    try:
        check_options(module.params)
    except ConfigError as exc:
        module.fail_json(msg='%s; nothing was changed' % to_native(exc), path=path)
    check_file_args(module)
    real, exists = check_path(module, path)
    text = None
    if exists:
        try:
            text = decode_config(read_bytes(module, path, real), path)
        except ConfigError as exc:
            module.fail_json(msg=to_native(exc), path=path)

    try:
        plan = plan_update(text, desired_settings(module.params), path)
    except ConfigError as exc:
        module.fail_json(msg=to_native(exc), path=path)

    directory = os.path.dirname(real) or '.'
    if plan['needs_write'] and not os.access(directory, os.W_OK | os.X_OK):
        module.fail_json(msg='cannot write %s: directory %s is not writable; it was left untouched: run as the file\'s owner '
                             '(become) or fix the permissions' % (path, directory), path=path)

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
            result['backup_file'] = module.backup_local(real)
        write_atomic(module, path, real, plan['content'])

    if os.path.exists(real):
        file_args = module.load_file_common_arguments(module.params, path=real)
        attr_diff: dict = {'before': {}, 'after': {}}
        result['changed'] = module.set_fs_attributes_if_different(file_args, result['changed'], attr_diff)
        if module._diff and (attr_diff['before'] or attr_diff['after']):
            diffs.append(attr_diff)
        if module.params['mode'] is None and os.stat(real).st_mode & stat.S_IROTH and secret_values(plan['merged']):
            module.warn('%s is readable by every user and holds a password; set mode: "0600"' % path)
    elif module.check_mode and any(module.params[key] for key in ('owner', 'group', 'mode')):
        result['changed'] = True
    if diffs:
        result['diff'] = diffs
    module.exit_json(**result)


if __name__ == '__main__':
    main()
