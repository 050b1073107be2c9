# Copyright: opsguard maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How an AnQiCMS instance is named everywhere: unit, directory, databases, backend, sites, records.

One definition used by the roles (through the ``anqicms_instances`` filter), the fleet playbooks' filters and
the lifecycle entry points. Control-node code only: it never runs on a managed host.
"""

from __future__ import annotations

import re
import typing as t

DEFAULT_BASE_DIR = '/opt/anqicms'
NAME_RE = re.compile(r'^[a-z0-9_-]{1,64}\Z')
PORT_RE = re.compile(r'^[0-9]{1,5}\Z')


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


def upstream_name(site: str) -> str:
    """Name of the nginx upstream (and its shared zone) of a proxy site."""
    return 'anqicms_%s' % str(site).replace('-', '_')


def backend(port: t.Any) -> str:
    """Address nginx passes a local instance's requests to."""
    return '127.0.0.1:%s' % port


def _filled(entry: t.Mapping[str, t.Any], key: str) -> t.Any:
    """The value of ``key`` when given and not empty or false, else None (Jinja's ``default(x, true)``)."""
    value = entry.get(key)
    return value if value else None


def _where(entry: t.Mapping[str, t.Any], index: int, variable: str) -> str:
    name = entry.get('name')
    return '%s item %s%s' % (variable, index + 1, ' (%s)' % name if isinstance(name, str) and NAME_RE.match(name) else '')


def _check_port(port: t.Any, where: str) -> None:
    if port in (None, ''):
        return
    if isinstance(port, bool) or not (isinstance(port, int) or (isinstance(port, str) and PORT_RE.match(port))) \
            or not 1 <= int(port) <= 65535:
        raise NamingError('%s: port=%r is not a whole number from 1 to 65535' % (where, port))


def _check_sites(sites: t.Any, where: str) -> list[t.Any]:
    if sites in (None, '', [], {}):
        return []
    if not isinstance(sites, (list, tuple)):
        raise NamingError('%s: sites must be a list of {name, server_name}, got %s' % (where, type(sites).__name__))
    for number, site in enumerate(sites, 1):
        if not isinstance(site, t.Mapping):
            raise NamingError('%s: sites item %s must be a dict with name and server_name, got %s'
                              % (where, number, type(site).__name__))
        for key in ('name', 'server_name'):
            value = site.get(key)
            if not isinstance(value, str) or not value.strip():
                raise NamingError('%s: sites item %s needs a non-empty %s, got %r' % (where, number, key, value))
    return list(sites)


def normalize_instance(entry: t.Mapping[str, t.Any], base_dir: str = DEFAULT_BASE_DIR, index: int = 0,
                       variable: str = 'app_instances') -> dict[str, t.Any]:
    """One app_instances entry with every derived key filled in.

    ``index`` (0-based) and ``variable`` only name the entry in error messages. Messages never show db_password.
    """
    if not isinstance(entry, t.Mapping):
        raise NamingError('%s item %s must be a dict with name and port, got %s' % (variable, index + 1, type(entry).__name__))
    where = _where(entry, index, variable)
    name = entry.get('name')
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise NamingError('%s: name=%r must be 1 to 64 characters of a-z, 0-9, _ and -' % (where, name))
    port = entry.get('port')
    _check_port(port, where)
    for key in ('directory', 'server_name', 'base_url', 'database', 'db_user'):
        value = entry.get(key)
        if value not in (None, '') and not isinstance(value, str):
            raise NamingError('%s: %s must be a string, got %s' % (where, key, type(value).__name__))
    directory = _filled(entry, 'directory')
    if directory is not None and not directory.startswith('/'):
        raise NamingError('%s: directory=%r must be an absolute path' % (where, directory))
    sites = _check_sites(entry.get('sites'), where)
    server_name = _filled(entry, 'server_name') or '%s.localhost' % name
    directory = strip_dir(directory or default_directory(name, base_dir))
    database = _filled(entry, 'database') or 'anqicms_%s' % slug(name)
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
        'site_names': [server_name] + [s['server_name'] for s in sites],
        'databases': [database] + ['%s_%s' % (database, slug(s['name'])) for s in sites],
        'memory_max_bytes': _filled(entry, 'memory_max_bytes'),
        'unit': unit_name(name),
        'backend': backend(port) if port not in (None, '') else None,
    })
    return out


def normalize_instances(entries: t.Any, base_dir: str = DEFAULT_BASE_DIR, variable: str = 'app_instances') -> list[dict[str, t.Any]]:
    """Every entry normalized; ``variable`` names the list in error messages."""
    if entries in (None, ''):
        return []
    if not isinstance(entries, (list, tuple)):
        raise NamingError('%s must be a list of instances, got %s' % (variable, type(entries).__name__))
    if base_dir not in (None, '') and (not isinstance(base_dir, str) or not base_dir.startswith('/')):
        raise NamingError('the base directory of %s must be an absolute path, got %r' % (variable, base_dir))
    return [normalize_instance(e, base_dir, i, variable) for i, e in enumerate(entries)]
