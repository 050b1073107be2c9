# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of the backup and restore modules: every problem found before any work, each naming the option, the value
and what is expected."""

from __future__ import annotations

import os

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_retention import retention_problems
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import ID_RE, show_value
from ansible_collections.opsguard.anqicms.plugins.module_utils.paths import resolve, resolve_problem
from ansible_collections.opsguard.anqicms.plugins.module_utils.mysql_client import MysqlError, defaults_text, login_from_params

MAX_TIMEOUT = 7 * 86400
NAME_MAX = 255
PATH_MAX = 4096


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:100] + '...(%d characters)' % len(value)


def path_problems(option: str, value, absolute: bool = True) -> list:
    """Why ``value`` is no usable path for ``option`` (empty list when it is). None is fine (option not given)."""
    if value is None:
        return []
    if not isinstance(value, str) or value == '':
        return ['%s must be a non-empty path; got %s' % (option, _shown(value))]
    if '\0' in value:
        return ['%s contains a NUL byte, which no path can hold; got %s' % (option, _shown(value))]
    try:
        raw = os.fsencode(value)
    except UnicodeEncodeError:
        return ['%s cannot be encoded as a file name (lone surrogate characters); got %s' % (option, _shown(value))]
    if len(raw) >= PATH_MAX or any(len(part) > NAME_MAX for part in raw.split(b'/')):
        return ['%s is longer than a path (%d bytes) or a path component (%d bytes) may be; got %s'
                % (option, PATH_MAX - 1, NAME_MAX, _shown(value))]
    problem = resolve_problem(value, option)
    if problem:
        return [problem]
    if absolute and not value.startswith('/'):
        return ['%s must be an absolute path (a module runs in a directory of its own choosing); got %s' % (option, _shown(value))]
    return []


def name_problems(option: str, value) -> list:
    """Why ``value`` is no usable directory name (one path component, not hidden, no control characters)."""
    if not isinstance(value, str) or value in ('', '.', '..') or '/' in value or value.startswith('.'):
        return ['%s %s is not usable as a directory name (one path component, not starting with a dot); set instance:'
                % (option, _shown(value))]
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return ['%s %s contains control characters (NUL, line breaks, ...); choose a plain name' % (option, _shown(value))]
    try:
        raw = os.fsencode(value)
    except UnicodeEncodeError:
        return ['%s %s cannot be encoded as a file name (lone surrogate characters)' % (option, _shown(value))]
    if len(raw) > NAME_MAX:
        return ['%s is %d bytes long; a directory name may have at most %d' % (option, len(raw), NAME_MAX)]
    return []


def int_problems(option: str, value, low: int, high: int, why: str = '') -> list:
    """Why ``value`` is no integer from ``low`` to ``high`` for ``option`` (bools refused). None is fine."""
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int):
        return ['%s must be an integer from %d to %d; got %s' % (option, low, high, _shown(value))]
    if not low <= value <= high:
        return ['%s must be from %d to %d%s; got %d' % (option, low, high, why, value)]
    return []


def backup_option_problems(p: dict) -> list:
    """Every problem with the options of the backup module, found before any work (nothing read from the database, nothing written)."""
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
    path = resolve(p['path'], 'path')
    if os.path.lexists(path) and not os.path.isdir(path):
        problems.append('path %s is not a directory: give the install directory of the instance' % p['path'])
    if p.get('instance') is None:
        problems += name_problems('instance (the base name of path)', os.path.basename(path))
    dest = resolve(p['dest'], 'dest')
    if os.path.lexists(dest) and not os.path.isdir(dest):
        problems.append('dest %s exists and is not a directory' % p['dest'])
    elif not problems:
        instance_dir = os.path.join(dest, p.get('instance') or os.path.basename(path))
        if os.path.lexists(instance_dir) and not os.path.isdir(instance_dir):
            problems.append('%s (dest/instance) exists and is not a directory' % instance_dir)
    return problems


def restore_option_problems(p: dict) -> list:
    """Every problem with the options of the restore module, each naming the option, the value and what is expected. Touches nothing."""
    problems = []
    for name in ('path', 'dest', 'backup_path', 'exe'):
        value = p.get(name)
        if value is None and name != 'path':
            continue
        if not isinstance(value, str) or not value.startswith('/') or '\0' in value or len(value) > PATH_MAX:
            problems.append('%s=%s must be an absolute path (no NUL byte, at most %d characters)' % (name, show_value(value), PATH_MAX))
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
        elif len(value) > PATH_MAX:
            problems.append('%s=%s is longer than %d characters' % (name, shown, PATH_MAX))
    if not problems:
        try:
            defaults_text(login_from_params(p))
        except MysqlError as exc:
            problems.append(str(exc))
    return problems
