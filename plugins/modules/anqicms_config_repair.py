#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: anqicms_config_repair
short_description: Keep a last-good copy of an AnQiCMS config.json, and put it back when a kill broke the file
version_added: 0.1.0
description:
  - AnQiCMS rewrites its C(config.json) with C(O_TRUNC) and no C(fsync) (web install, every start with C(MYSQL_*)
    environment variables). A kill during that write leaves the file empty or cut short, and the instance exits at its
    next start. Run this module before starting an instance that was stopped or killed.
  - With O(state=kept) (while the instance runs), a C(config.json) AnQiCMS can start with and that holds a database name
    is copied to O(copies_dir) (mode 0600, written through a temporary file, C(fsync) and a rename). A file that is not
    usable is not copied and the previous copy stays; that is not an error.
  - With O(state=repaired) (before a start), a C(config.json) AnQiCMS can start with is left alone. One it cannot start
    with (missing, empty, cut short, not JSON, JSON of the wrong shape) is replaced by the newest last-good copy among
    the copy kept in O(copies_dir) and the C(config.json) of site 1 in the backups of M(opsguard.anqicms.backup) under
    O(backup_dest); a backup is used only after the whole backup verified (manifest schema, size and sha256 of every
    artifact). The broken file is kept next to it as C(config.json.broken-<UTC time>). The result and a warning say
    which copy was used and why the newer ones were passed over.
  - Every file read is untrusted. Copies and backups are read as regular files only (never through a symbolic link,
    never a FIFO or device), at most 1 MiB, strict JSON of the shape AnQiCMS decodes, holding C(mysql.database), and
    when O(port) is given a C(server.port) that is that port (or none). A C(config.json) that is a symbolic link is
    checked through the link but never written through it.
  - When no usable copy exists the module fails, changes nothing and says what it looked at.
author:
  - opsguard contributors (@opsguard)
options:
  path:
    description:
      - Install directory of the instance (the directory of its executable and C(config.json)). An absolute path, not C(/).
    type: path
    required: true
  instance:
    description:
      - Name of the instance under O(backup_dest), as given to M(opsguard.anqicms.backup). Defaults to the base name of O(path).
    type: str
  port:
    description:
      - The instance's HTTP port. A copy whose C(server.port) is another port belongs to another instance and is not used.
    type: int
  state:
    description:
      - V(kept) copies a usable C(config.json) to O(copies_dir); V(repaired) replaces a broken one.
    type: str
    choices: [kept, repaired]
    default: repaired
  copies_dir:
    description:
      - Directory of the last-good copies, one file per install directory (C(/opt/anqicms/www) → C(opt_anqicms_www.json)).
        Created with mode 0700. An absolute path.
    type: path
    default: /var/lib/opsguard/config
  backup_dest:
    description:
      - Directory that holds the backups (the O(opsguard.anqicms.backup#module:dest) of the backup module). An absolute
        path; the backups of the instance are in C(<backup_dest>/<instance>).
    type: path
    default: /var/backups/anqicms
extends_documentation_fragment:
  - opsguard.anqicms.attributes
  - opsguard.anqicms.attributes.platform
attributes:
  check_mode:
    support: full
    details: Reads and decides as a real run (which copy, after verifying the backup); writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: A usable file is left alone; a kept copy is written only when its content changes.
  platform:
    support: full
    platforms: posix
seealso:
  - module: opsguard.anqicms.anqicms_config
  - module: opsguard.anqicms.backup
'''

EXAMPLES = r'''
- name: Keep a last-good copy while the instance runs
  opsguard.anqicms.anqicms_config_repair:
    path: /opt/anqicms/www
    port: 8001
    state: kept

- name: Before the start, put back a config.json a kill broke
  opsguard.anqicms.anqicms_config_repair:
    path: /opt/anqicms/www
    port: 8001
  register: config_repair
'''

RETURN = r'''
repaired:
  description: Whether config.json was (in check mode, would be) replaced.
  returned: state=repaired
  type: bool
  sample: true
kept:
  description: Whether the kept copy was (in check mode, would be) written.
  returned: state=kept
  type: bool
  sample: false
problem:
  description: Why AnQiCMS could not start with the config.json found (null when it can).
  returned: always
  type: str
  sample: /opt/anqicms/www/config.json is empty (a kill during the application's own truncating write leaves it so)
source:
  description: The copy put back. C(kind) is C(kept) or C(backup), C(id) the backup id.
  returned: when repaired
  type: dict
  sample: {"kind": "backup", "where": "/var/backups/anqicms/www/20260101T000000123456Z", "id": "20260101T000000123456Z", "time": "2026-01-01T00:00:00Z"}
passed_over:
  description: Newer copies that could not be used, each with the reason.
  returned: state=repaired and the file was broken
  type: list
  elements: str
  sample: ["kept copy /var/lib/opsguard/config/opt_anqicms_www.json is for port 8002, not port 8001 of this instance"]
broken_copy:
  description: Where the broken file was kept.
  returned: when repaired outside check mode
  type: str
  sample: /opt/anqicms/www/config.json.broken-20260101T000000123456Z
copy:
  description: Path of the kept copy.
  returned: state=kept
  type: str
  sample: /var/lib/opsguard/config/opt_anqicms_www.json
'''

import datetime
import os
import stat
import tempfile

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.opsguard.anqicms.plugins.module_utils.config_repair import (
    CONFIG,
    RepairError,
    choose_source,
    copy_name,
    copy_problem,
    read_regular,
    sources,
    start_problem,
)
from ansible_collections.opsguard.anqicms.plugins.module_utils.options import new_module

ARGUMENT_SPEC = dict(
    path=dict(type='path', required=True),
    instance=dict(type='str'),
    port=dict(type='int'),
    state=dict(type='str', choices=['kept', 'repaired'], default='repaired'),
    copies_dir=dict(type='path', default='/var/lib/opsguard/config'),
    backup_dest=dict(type='path', default='/var/backups/anqicms'),
)


def option_problems(params: dict) -> list:
    """Sentences naming each option that cannot be used; [] when all are fine."""
    problems = []
    for name in ('path', 'copies_dir', 'backup_dest'):
        value = params.get(name)
        if value is None:
            continue
        if '\x00' in value or '\n' in value or not value.startswith('/') or os.path.normpath(value) == '/':
            problems.append('%s=%r must be an absolute path other than / without NUL or newline' % (name, value[:200]))
    instance = params.get('instance')
    if instance is not None and (not instance or '/' in instance or instance.startswith('.') or '\x00' in instance
                                 or len(instance) > 255):
        problems.append('instance=%r must be a directory name (no "/", not starting with ".")' % instance[:200])
    port = params.get('port')
    if port is not None and not 1 <= port <= 65535:
        problems.append('port=%r must be a TCP port from 1 to 65535' % port)
    return problems


def write_file(directory: str, name: str, data: bytes, uid: int | None = None, gid: int | None = None, mode: int = 0o600) -> None:
    """Write ``directory/name`` through a private temporary file, fsync and a rename; the directory is synced too."""
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % name, dir=directory)
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
            handle.flush()
            if uid is not None or gid is not None:
                os.fchown(handle.fileno(), -1 if uid is None else uid, -1 if gid is None else gid)
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.rename(tmp, os.path.join(directory, name))
        tmp = None
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def live_config(path: str) -> tuple[str, bytes | None, os.stat_result | None, str | None]:
    """(config.json path, its content or None, its lstat or None, why it could not be read)."""
    config = os.path.join(path, CONFIG)
    try:
        st = os.lstat(config)
    except FileNotFoundError:
        return config, None, None, '%s does not exist' % config
    except OSError as exc:
        return config, None, None, '%s cannot be looked at (%s)' % (config, exc.strerror)
    try:
        data = read_regular(config, follow=True)[0]
    except RepairError as exc:
        return config, None, st, str(exc)
    return config, data, st, None


def keep(module, params: dict) -> dict:
    path = params['path']
    config, data, dummy, unreadable = live_config(path)
    target = os.path.join(params['copies_dir'], copy_name(path))
    result = {'changed': False, 'kept': False, 'copy': target, 'problem': None}
    problem = unreadable or copy_problem(data, config, params['port'])
    if problem:
        result.update(problem=problem, msg='no copy kept: %s; the previous copy stays' % problem)
        return result
    try:
        old = read_regular(target)[0]
    except RepairError:
        old = None
    if old == data:
        result['msg'] = '%s is already kept in %s' % (config, target)
        return result
    result.update(changed=True, kept=True, msg='kept %s in %s' % (config, target))
    if not module.check_mode:
        try:
            os.makedirs(params['copies_dir'], mode=0o700, exist_ok=True)
            write_file(params['copies_dir'], copy_name(path), data)
        except OSError as exc:
            module.fail_json(msg='cannot keep a copy of %s in %s: %s' % (config, target, to_native(exc)), **result)
    return result


def repair(module, params: dict) -> dict:
    path = params['path']
    config, data, st, unreadable = live_config(path)
    problem = unreadable or start_problem(data, config)
    result = {'changed': False, 'repaired': False, 'problem': problem}
    if problem is None:
        result['msg'] = '%s is one AnQiCMS can start with' % config
        return result
    instance = params['instance'] or os.path.basename(path.rstrip('/'))
    chosen, passed = choose_source(sources(path, instance, params['backup_dest'], params['copies_dir']), params['port'])
    result['passed_over'] = passed
    if chosen is None:
        module.fail_json(msg='%s, and no last-good copy of it was found (%s); nothing was changed and the instance cannot '
                             'start: restore a backup (opsguard.anqicms.restore) or repair the file by hand'
                             % (problem, '; '.join(passed) or 'no kept copy in %s, no backup of %s in %s'
                                % (params['copies_dir'], instance, params['backup_dest'])), **result)
    if st is not None and stat.S_ISLNK(st.st_mode):
        module.fail_json(msg='%s; it is a symbolic link, which this module does not write through: repair it by hand '
                             '(a usable copy is %s)' % (problem, chosen['where']), **result)
    source = {'kind': chosen['kind'], 'where': chosen['where'], 'id': chosen['id'],
              'time': chosen['time'].strftime('%Y-%m-%dT%H:%M:%SZ')}
    what = 'the kept copy %s' % chosen['where'] if chosen['kind'] == 'kept' else 'verified backup %s' % chosen['id']
    result.update(changed=True, repaired=True, source=source,
                  msg='%s: config.json %srestored from %s' % (problem, 'would be ' if module.check_mode else '', what))
    if module.check_mode:
        return result
    directory = os.path.dirname(config)
    uid = gid = None
    mode = 0o600
    if st is not None and stat.S_ISREG(st.st_mode):
        uid, gid, mode = st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode) & 0o7777
    else:
        try:
            dst = os.stat(directory)
            uid, gid = dst.st_uid, dst.st_gid
        except OSError:
            pass
    try:
        if st is not None and stat.S_ISREG(st.st_mode):
            broken = '%s.broken-%s' % (config, datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%S%fZ'))
            os.link(config, broken)
            result['broken_copy'] = broken
        write_file(directory, CONFIG, chosen['data'], uid, gid, mode)
    except OSError as exc:
        module.fail_json(msg='%s; writing the copy from %s failed: %s' % (problem, what, to_native(exc)), **result)
    module.warn(result['msg'])
    return result


def main() -> None:
    module = new_module(ARGUMENT_SPEC, 'anqicms_config_repair', supports_check_mode=True)
    problems = option_problems(module.params)
    if problems:
        module.fail_json(msg='anqicms_config_repair refused, nothing was done: %s' % '; '.join(problems))
    params = dict(module.params, path=module.params['path'].rstrip('/'))
    result = keep(module, params) if params['state'] == 'kept' else repair(module, params)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
