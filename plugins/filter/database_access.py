# Copyright: opsguard maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters database_login_problems (the login_* inputs of the backup and restore playbooks, judged together) and
database_grants (the privileges of a dedicated backup/restore account); documented in database_login_problems.yml and
database_grants.yml."""

from __future__ import annotations

import re
import typing as t
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.filter.playbook_inputs import given
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_workflow import SCRATCH_PREFIX
from ansible_collections.opsguard.anqicms.plugins.module_utils.restore_workflow import derived_prefix

# Database names a grant can name without quoting problems (community.mysql splits privileges on . : /).
DATABASE_RE = re.compile(r'^[A-Za-z0-9_$-]{1,64}\Z')
DEFAULT_SOCKET = '/run/mysqld/mysqld.sock'


def _filled(values: Mapping, name: str) -> bool:
    return given(values, name) and values[name] != ''


def database_login_problems(values: t.Any, prefix: t.Any, default_user: t.Any = 'root') -> list[str]:
    """One sentence per contradiction between ``<prefix>_login_{user,password,host,port,unix_socket}``; [] when fine.

    ``values`` are the playbook's variables (each already of its declared type); ``default_user`` is the spec's
    default of ``<prefix>_login_user``.
    """
    if not isinstance(values, Mapping):
        raise AnsibleFilterError('database_login_problems: the input must be a dict of {variable: value}, got %s' % type(values).__name__)
    if not isinstance(prefix, str) or not prefix:
        raise AnsibleFilterError('database_login_problems: prefix must be a variable prefix such as opsguard_restore, got %r' % (prefix,))
    names = dict((key, '%s_login_%s' % (prefix, key)) for key in ('user', 'password', 'host', 'port', 'unix_socket'))
    user = values[names['user']] if given(values, names['user']) else default_user
    problems = []
    if _filled(values, names['host']):
        if given(values, names['unix_socket']):
            problems.append('%s and %s are both set: the client connects either over TCP to a host or through a socket; '
                            'set one of them.' % (names['host'], names['unix_socket']))
        if user not in (None, '') and not _filled(values, names['password']):
            problems.append('%s=%s logs in over TCP as %s=%s without %s: socket authentication (as root has it) does not '
                            'work over the network; give the password of a dedicated account (docs/playbooks.md, '
                            '"A database on another host").'
                            % (names['host'], values[names['host']], names['user'], user, names['password']))
    elif given(values, names['port']):
        problems.append('%s is set without %s: a port only means something for a TCP login to a host.'
                        % (names['port'], names['host']))
    return problems


def _pattern(name: str) -> str:
    """A literal database name as a GRANT pattern: ``_`` and ``%`` would otherwise match any character(s)."""
    return name.replace('\\', '\\\\').replace('_', '\\_').replace('%', '\\%')


def database_grants(instances: t.Any, verify: t.Any = True) -> dict[str, str]:
    """``{database pattern.*: 'ALL'}`` for community.mysql.mysql_user ``priv``: what backup and restore need.

    ``instances`` are normalized instances (filter anqicms_instances, each with ``databases``). Per database: the
    database itself and every staging/previous database restore derives from it (``<first 40 characters>_opsg_*``);
    with ``verify``, the scratch databases of verify=true backups (``opsguard_verify_*``).
    """
    if not isinstance(instances, (list, tuple)):
        raise AnsibleFilterError('database_grants: the input must be the list of instances (filter anqicms_instances), got %s'
                                 % type(instances).__name__)
    grants: dict[str, str] = {}
    for index, instance in enumerate(instances):
        databases = instance.get('databases') if isinstance(instance, Mapping) else None
        if not isinstance(databases, (list, tuple)) or not databases:
            raise AnsibleFilterError('database_grants: instance %d has no list of databases; give the output of '
                                     'opsguard.anqicms.anqicms_instances' % (index + 1))
        for database in databases:
            if not isinstance(database, str) or not DATABASE_RE.match(database):
                raise AnsibleFilterError('database_grants: instance %s has database %r; a dedicated account can only be '
                                         'granted databases named with letters, digits, _, $ and - (1 to 64 characters)'
                                         % (instance.get('name'), database))
            grants['%s.*' % _pattern(database)] = 'ALL'
            grants['%s%%.*' % _pattern(derived_prefix(database))] = 'ALL'
    if verify:
        grants['%s%%.*' % _pattern(SCRATCH_PREFIX)] = 'ALL'
    return grants


class FilterModule:
    """Database login and grant filters."""

    def filters(self) -> dict[str, t.Callable]:
        return {
            'database_login_problems': database_login_problems,
            'database_grants': database_grants,
        }
