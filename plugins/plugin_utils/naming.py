# Copyright: opsguard maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How an AnQiCMS instance is named everywhere: unit, directory, databases, backend address, sites, records.

One definition used by the roles (through the ``anqicms_instances`` filter), the fleet playbooks' filters and
the lifecycle entry points. Control-node code only: it never runs on a managed host.
"""

from __future__ import annotations

import re
import typing as t

DEFAULT_BASE_DIR = '/opt/anqicms'
NAME_RE = re.compile(r'^[a-z0-9_-]{1,64}$')


class NamingError(ValueError):
    """An app_instances entry that cannot be named; the message says which and why."""


def slug(name: str) -> str:
    """The part of database and user names derived from an instance or site name."""
    return re.sub(r'[^A-Za-z0-9_]', '_', str(name))


def unit_name(name: str) -> str:
    return 'anqicms-%s.service' % name


def default_directory(name: str, base_dir: str = DEFAULT_BASE_DIR) -> str:
    return '%s/%s' % (str(base_dir or DEFAULT_BASE_DIR).rstrip('/') or '', name)


def strip_dir(path: str) -> str:
    """A directory without its trailing slashes ('/' stays '/')."""
    stripped = str(path).rstrip('/')
    return stripped or '/'


def record_name(directory: str) -> str:
    """File name of the emergency_stop record of the instance installed in ``directory``."""
    return strip_dir(directory).lstrip('/').replace('/', '_') + '.json'


def _filled(entry: t.Mapping[str, t.Any], key: str) -> t.Any:
    """The value of ``key`` when given and not empty, else None (Jinja's ``default(x, true)``)."""
    value = entry.get(key)
    return value if value not in (None, '', [], {}) else None


def normalize_instance(entry: t.Mapping[str, t.Any], base_dir: str = DEFAULT_BASE_DIR) -> dict[str, t.Any]:
    """One app_instances entry with every derived key filled in."""
    if not isinstance(entry, t.Mapping):
        raise NamingError('an app_instances entry must be a dict, got %s' % type(entry).__name__)
    name = entry.get('name')
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise NamingError('app_instances entry name=%r must be 1 to 64 characters of a-z, 0-9, _ and -' % (name,))
    port = entry.get('port')
    server_name = _filled(entry, 'server_name') or '%s.localhost' % name
    directory = strip_dir(_filled(entry, 'directory') or default_directory(name, base_dir))
    database = _filled(entry, 'database') or 'anqicms_%s' % slug(name)
    sites = list(_filled(entry, 'sites') or [])
    out = dict(entry)
    out.update({
        'name': name,
        'directory': directory,
        'exe': directory + '/anqicms',
        'server_name': server_name,
        'base_url': _filled(entry, 'base_url') or 'http://%s' % server_name,
        'database': database,
        'db_user': _filled(entry, 'db_user') or 'anqicms_%s' % slug(name),
        'db_password': entry.get('db_password') or '',
        'sites': sites,
        'site_names': [server_name] + [s.get('server_name') for s in sites if isinstance(s, t.Mapping)],
        'databases': [database] + ['%s_%s' % (database, slug(s.get('name'))) for s in sites if isinstance(s, t.Mapping)],
        'memory_max_bytes': _filled(entry, 'memory_max_bytes'),
        'unit': unit_name(name),
        'backend': '127.0.0.1:%s' % port if port not in (None, '') else None,
    })
    return out


def normalize_instances(entries: t.Any, base_dir: str = DEFAULT_BASE_DIR) -> list[dict[str, t.Any]]:
    if entries in (None, ''):
        return []
    if not isinstance(entries, (list, tuple)):
        raise NamingError('app_instances must be a list, got %s' % type(entries).__name__)
    return [normalize_instance(e, base_dir) for e in entries]
