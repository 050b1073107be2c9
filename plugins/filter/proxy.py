# Copyright: opsguard maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters proxy_sites and proxy_failover_problems of the proxy role (documented in proxy_sites.yml and
proxy_failover_problems.yml)."""

from __future__ import annotations

import json
import re
import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.plugin_utils.naming import NamingError, normalize_instances, upstream_name

SITE_NAME_RE = re.compile(r'^[A-Za-z0-9_-]+\Z')
# A server name or backend is one nginx word (no blank, ; { } quote or control character); listen may hold blanks.
WORD_RE = re.compile(r'[^\s;{}\'"\x00-\x1f\x7f]+')
LISTEN_RE = re.compile(r'[^;{}\'"\\\x00-\x1f\x7f]+')
# Whole seconds or counts allowed for each failover setting (docs/roles/proxy.md).
FAILOVER_LIMITS = {
    'proxy_connect_timeout': (1, 60),
    'proxy_read_timeout': (1, 3600),
    'proxy_next_upstream_tries': (1, 10),
    'proxy_next_upstream_timeout': (1, 600),
    'proxy_max_fails': (1, 100),
    'proxy_fail_timeout': (1, 3600),
}
_DIGITS = re.compile(r'[0-9]+')


def _words(value: t.Any, where: str, key: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not value:
        raise AnsibleFilterError('%s: %s must be a non-empty list, got %s' % (where, key, json.dumps(value, default=str)))
    for item in value:
        if not isinstance(item, str) or not WORD_RE.fullmatch(item):
            raise AnsibleFilterError('%s: %s item %s must be one word without blanks, quotes, ; { or }'
                                     % (where, key, json.dumps(item, default=str)))
    return list(value)


def _listen(value: t.Any, where: str) -> t.Any:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not LISTEN_RE.fullmatch(value)):
        raise AnsibleFilterError('%s: listen=%s must be a port or an nginx listen address without quotes, ; { or }'
                                 % (where, json.dumps(value, default=str)))
    return value


def _given_sites(sites: t.Any, listen: t.Any) -> list[dict[str, t.Any]]:
    if not isinstance(sites, (list, tuple)):
        raise AnsibleFilterError('proxy_sites must be a list of {name, server_names, backends, listen}, got %s' % type(sites).__name__)
    out = []
    for number, site in enumerate(sites, 1):
        where = 'proxy_sites item %s' % number
        if not isinstance(site, t.Mapping):
            raise AnsibleFilterError('%s must be a dict with name, server_names and backends, got %s' % (where, type(site).__name__))
        name = site.get('name')
        if not isinstance(name, str) or not SITE_NAME_RE.match(name):
            raise AnsibleFilterError('%s: name=%s must be letters, digits, _ and -' % (where, json.dumps(name, default=str)))
        where = '%s (%s)' % (where, name)
        own_listen = site.get('listen')
        out.append({
            'name': name,
            'server_names': _words(site.get('server_names'), where, 'server_names'),
            'backends': _words(site.get('backends'), where, 'backends'),
            'listen': _listen(own_listen if own_listen not in (None, '') else listen, where),
        })
    return out


def _instance_sites(instances: t.Any, listen: t.Any) -> list[dict[str, t.Any]]:
    try:
        entries = normalize_instances(instances)
    except NamingError as err:
        raise AnsibleFilterError(str(err)) from None
    out = []
    for number, entry in enumerate(entries, 1):
        where = 'app_instances item %s (%s)' % (number, entry['name'])
        if entry['backend'] is None:
            raise AnsibleFilterError('%s has no port: the proxy needs it for the backend 127.0.0.1:<port>' % where)
        out.append({
            'name': entry['name'],
            'server_names': _words(entry['site_names'], where, 'server names'),
            'backends': [entry['backend']],
            'listen': _listen(listen, 'proxy_listen'),
        })
    return out


def proxy_sites(sites: t.Any, instances: t.Any = None, listen: t.Any = 80) -> list[dict[str, t.Any]]:
    """proxy_sites with every key filled in, or one site per instance when proxy_sites is empty.

    Refuses sites without a usable name, server names or backends, and names or server names used twice.
    """
    if sites in (None, '') or (isinstance(sites, (list, tuple)) and not sites):
        out = _instance_sites(instances, listen)
    else:
        out = _given_sites(sites, listen)
    seen_names: set[str] = set()
    seen_servers: dict[str, str] = {}
    for site in out:
        if site['name'] in seen_names:
            raise AnsibleFilterError('site name %s is used by two sites; each site needs its own name' % json.dumps(site['name']))
        seen_names.add(site['name'])
        for server in site['server_names']:
            if server in seen_servers:
                raise AnsibleFilterError('server name %s is used by sites %s and %s; each host name may belong to one site only'
                                         % (json.dumps(server), seen_servers[server], site['name']))
            seen_servers[server] = site['name']
        site['upstream'] = upstream_name(site['name'])
    return out


def proxy_failover_problems(settings: t.Any) -> list[str]:
    """One sentence per failover setting outside its limits (FAILOVER_LIMITS), [] when they are all fine."""
    if not isinstance(settings, t.Mapping):
        raise AnsibleFilterError('proxy_failover_problems needs a dict of the proxy failover settings, got %s' % type(settings).__name__)
    unknown = sorted(set(settings) - set(FAILOVER_LIMITS))
    if unknown:
        raise AnsibleFilterError('proxy_failover_problems knows no setting %s; it checks %s'
                                 % (', '.join(unknown), ', '.join(FAILOVER_LIMITS)))
    problems = []
    for name, (low, high) in FAILOVER_LIMITS.items():
        if name not in settings:
            problems.append('%s is not set' % name)
            continue
        value = settings[name]
        text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ''
        if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
            problems.append('%s=%s is not a whole number from %s to %s' % (name, json.dumps(value, default=str), low, high))
    if not problems and int(settings['proxy_next_upstream_timeout']) <= int(settings['proxy_connect_timeout']):
        problems.append('proxy_next_upstream_timeout=%s must be longer than proxy_connect_timeout=%s, else a backend that does not '
                        'answer is never followed by a retry' % (settings['proxy_next_upstream_timeout'], settings['proxy_connect_timeout']))
    return problems


class FilterModule:
    """nginx sites of the proxy role and the checks of their failover settings."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {'proxy_sites': proxy_sites, 'proxy_failover_problems': proxy_failover_problems}
