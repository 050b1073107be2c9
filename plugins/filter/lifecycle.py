# -*- coding: utf-8 -*-
# Copyright: opsguard maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decisions of the instance lifecycle (app role entry points stop and start, playbooks emergency_stop, recover,
backup, restore): which instances a host has, where nginx sends each one traffic, and which emergency_stop records
can be trusted.

Documentation: one ``<filter>.yml`` file per filter next to this file.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import re
import typing as t
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.plugin_utils.naming import (
    NAME_RE,
    NamingError,
    backend,
    normalize_instances,
    record_name,
    strip_dir,
    unit_name,
)

RECORD_DIR = '/var/lib/opsguard/emergency_stop'
# Site names as the proxy role writes them into file names (<site>@<backend>): no path separator, no '@'.
SITE_RE = re.compile(r'^[A-Za-z0-9_.-]{1,128}$')
BACKUP_ID_RE = re.compile(r'^[A-Za-z0-9_.:-]{1,128}$')
LOCAL_NAMES = ('127.0.0.1', 'localhost', '[::1]')
# The largest record the stop reads back (a record is a few hundred bytes); anything bigger is not ours.
RECORD_MAX_BYTES = 1048576
STOPPED_AT_RE = re.compile(r'^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$')


def _port(value: t.Any) -> int | None:
    """A TCP port as int, None when absent; anything else is not a port."""
    if value in (None, ''):
        return None
    if isinstance(value, bool):
        raise ValueError('port %r is not a number from 1 to 65535' % (value,))
    try:
        port = int(str(value), 10)
    except ValueError:
        raise ValueError('port %r is not a number from 1 to 65535' % (value,)) from None
    if not 1 <= port <= 65535:
        raise ValueError('port %r is not a number from 1 to 65535' % (value,))
    return port


def _clean_dir(value: t.Any) -> str:
    """An absolute, normalized install directory without trailing slash; refuses '..', NUL, newlines and '/'."""
    if not isinstance(value, str) or not value.startswith('/'):
        raise ValueError('directory %r is not an absolute path' % (value,))
    if any(c in value for c in '\0\n\r') or '/../' in value + '/' or '/./' in value + '/':
        raise ValueError('directory %r holds NUL, a newline, "." or ".."' % (value,))
    directory = strip_dir(posixpath.normpath(value))
    if directory == '/':
        raise ValueError('directory %r is the root directory' % (value,))
    return directory


def lifecycle_instance_problems(app_instances: t.Any, variable: str = 'app_instances') -> list[str]:
    """What is wrong with a list of instances, one sentence ([] when every entry can be named)."""
    try:
        lifecycle_instances(app_instances, variable=variable)
    except AnsibleFilterError as exc:
        return [str(exc.message) + '.']
    return []


def lifecycle_instances(app_instances: t.Any, base_dir: str = '/opt/anqicms', host: str = '', address: str = '',
                        variable: str = 'app_instances') -> list[dict[str, t.Any]]:
    """The instances the app role manages on one host, as the lifecycle entry points take them."""
    try:
        entries = normalize_instances(app_instances, base_dir or '/opt/anqicms', variable)
    except NamingError as exc:
        raise AnsibleFilterError(str(exc)) from None
    out = []
    for entry in entries:
        try:
            port = _port(entry.get('port'))
        except ValueError as exc:
            raise AnsibleFilterError('%s entry %s: %s' % (variable, entry['name'], exc)) from None
        out.append({
            'host': host,
            'address': address or host,
            'name': entry['name'],
            'port': port,
            'directory': entry['directory'],
            'exe': entry['exe'],
            'unit': entry['unit'],
            'managed': True,
            'sites': [s for s in entry['site_names'] if s],
        })
    return out


def _sites_of(proxy: str, hv: t.Any) -> list[Mapping]:
    """Sites of one nginx host: its proxy_sites or, when empty, one per app_instances item (the proxy role's default)."""
    sites = hv.get('proxy_sites') or []
    if not sites:
        sites = []
        for i in hv.get('app_instances') or []:
            if isinstance(i, Mapping) and i.get('name') and i.get('port') not in (None, ''):
                sites.append({'name': i['name'], 'backends': [backend(i['port'])]})
    if not isinstance(sites, (list, tuple)):
        raise AnsibleFilterError('drain_targets: proxy_sites of %s must be a list, got %s' % (proxy, type(sites).__name__))
    return [s for s in sites if isinstance(s, Mapping)]


def drain_targets(instance: t.Any, hostvars: t.Any, proxy_hosts: t.Any = None) -> list[dict[str, str]]:
    """Every (nginx host, site, backend) that sends traffic to ``instance``.

    ``instance`` needs host, port and optionally address (the name other hosts reach it by); an instance without
    a port (not managed by the app role) gets no targets. A backend on 127.0.0.1/localhost/[::1] only counts at
    an nginx on the instance's own host.
    """
    if not isinstance(instance, Mapping):
        raise AnsibleFilterError('drain_targets: the instance must be a dict, got %s' % type(instance).__name__)
    try:
        port = _port(instance.get('port'))
    except ValueError as exc:
        raise AnsibleFilterError('drain_targets: instance %s: %s' % (instance.get('name'), exc)) from None
    if port is None:
        return []
    host = str(instance.get('host') or '')
    if not host:
        raise AnsibleFilterError('drain_targets: instance %s has no host' % instance.get('name'))
    address = str(instance.get('address') or host)
    remote = {'%s:%d' % (address, port), '%s:%d' % (host, port)}
    local = {'%s:%d' % (n, port) for n in LOCAL_NAMES}
    if proxy_hosts in (None, ''):
        proxy_hosts = []
    if isinstance(proxy_hosts, str) or not isinstance(proxy_hosts, (list, tuple)):
        raise AnsibleFilterError('drain_targets: the nginx hosts must be a list of inventory names, got %r' % (proxy_hosts,))
    out: list[dict[str, str]] = []
    for proxy in proxy_hosts:
        try:
            hv = hostvars[proxy]
        except KeyError:
            raise AnsibleFilterError('drain_targets: nginx host %s is not in the inventory' % proxy) from None
        for site in _sites_of(proxy, hv):
            for raw in site.get('backends') or []:
                address_port = str(raw)
                if address_port in remote or (proxy == host and address_port in local):
                    out.append({'proxy': str(proxy), 'site': str(site.get('name')), 'backend': address_port})
    return out


# ---------------------------------------------------------------- emergency_stop records


class RecordError(ValueError):
    """A record that cannot be trusted; the message says what is wrong with it."""


def _bool(value: t.Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    raise RecordError('%s must be true or false, got %r' % (what, value))


def parse_record(path: str, text: t.Any, host: str, proxy_hosts: t.Sequence[str] = ()) -> dict[str, t.Any]:
    """One emergency_stop record, checked field by field; RecordError when anything does not add up."""
    if not isinstance(text, str):
        raise RecordError('its content is not text')
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RecordError('it is not JSON (%s)' % exc) from None
    except RecursionError:
        raise RecordError('it is not JSON this module reads (nested too deeply)') from None
    if not isinstance(data, dict):
        raise RecordError('it is not a JSON object')
    inst = data.get('instance')
    if not isinstance(inst, dict):
        raise RecordError('instance is missing or not an object')
    name = inst.get('name')
    try:
        directory = _clean_dir(inst.get('directory'))
        port = _port(inst.get('port'))
    except ValueError as exc:
        raise RecordError('instance.%s' % exc) from None
    if directory != inst.get('directory'):
        raise RecordError('instance.directory %r is not written the way emergency_stop writes it (%r)' % (inst.get('directory'), directory))
    if posixpath.basename(path) != record_name(directory):
        raise RecordError('its file name does not belong to instance.directory %r (expected %s)' % (directory, record_name(directory)))
    if posixpath.dirname(path) != RECORD_DIR:
        raise RecordError('it is not in %s' % RECORD_DIR)
    if inst.get('host') != host:
        raise RecordError('instance.host %r is not this host (%s)' % (inst.get('host'), host))
    unit = inst.get('unit')
    if unit is None:
        if name != directory:
            raise RecordError('an instance without unit must be named by its directory, got name %r' % (name,))
        if port is not None:
            raise RecordError('an instance without unit has no port, got %r' % (port,))
    else:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise RecordError('instance.name %r is not an app_instances name (a-z, 0-9, _ and -)' % (name,))
        if unit != unit_name(name):
            raise RecordError('instance.unit %r is not the unit of instance %s (%s)' % (unit, name, unit_name(name)))
        if port is None:
            raise RecordError('instance %s has a unit but no port' % name)
    exe = inst.get('exe')
    if exe is not None and (not isinstance(exe, str) or not exe.startswith('/') or '\n' in exe):
        raise RecordError('instance.exe %r is not an absolute path' % (exe,))
    address = str(inst.get('address') or host)
    remote = {'%s:%s' % (address, port), '%s:%s' % (host, port)}
    local = {'%s:%s' % (n, port) for n in LOCAL_NAMES}
    drains = data.get('drains', [])
    if not isinstance(drains, list):
        raise RecordError('drains must be a list')
    clean_drains = []
    for d in drains:
        if not isinstance(d, dict) or set(d) != {'proxy', 'site', 'backend'} or not all(isinstance(v, str) for v in d.values()):
            raise RecordError('drains entry %r is not {proxy, site, backend} of strings' % (d,))
        if d['proxy'] not in proxy_hosts:
            raise RecordError('drains entry names nginx host %r, which is not in the proxy group (%s)'
                              % (d['proxy'], ', '.join(proxy_hosts) or 'empty'))
        if not isinstance(d['site'], str) or not SITE_RE.match(d['site']):
            raise RecordError('drains entry site %r is not a site name' % (d['site'],))
        if d['backend'] not in remote and not (d['proxy'] == host and d['backend'] in local):
            raise RecordError('drains entry backend %r at %s is not this instance (port %s on %s)' % (d['backend'], d['proxy'], port, host))
        clean_drains.append({'proxy': d['proxy'], 'site': d['site'], 'backend': d['backend']})
    cron = data.get('cron', [])
    if not isinstance(cron, list) or not all(isinstance(c, dict) for c in cron):
        raise RecordError('cron must be a list of objects')
    backup_id = data.get('backup_id')
    if backup_id is not None and (not isinstance(backup_id, str) or not BACKUP_ID_RE.match(backup_id)):
        raise RecordError('backup_id %r is not a backup id' % (backup_id,))
    record = dict(data)
    record.update({
        'instance': dict(inst, name=name, directory=directory, port=port, unit=unit, exe=exe, host=host, address=address,
                         managed=unit is not None),
        'unit_was_enabled': _bool(data.get('unit_was_enabled', False), 'unit_was_enabled'),
        'drains': clean_drains,
        'cron': cron,
        'backup_id': backup_id,
        # Shown to people: a time as emergency_stop writes it, or nothing.
        'stopped_at': data['stopped_at'] if isinstance(data.get('stopped_at'), str) and STOPPED_AT_RE.match(data['stopped_at']) else None,
        'record_path': path,
        'key': '%s:%s' % (host, name),
    })
    return record


def stop_record_path(directory: t.Any) -> str:
    """Where emergency_stop keeps the record of the instance installed in ``directory``."""
    try:
        return '%s/%s' % (RECORD_DIR, record_name(_clean_dir(directory)))
    except ValueError as exc:
        raise AnsibleFilterError('stop_record_path: %s' % exc) from None


def _slurped_text(result: Mapping) -> str:
    """The text of one slurp result; RecordError when it was not read or is not base64 of UTF-8."""
    if result.get('failed') or 'content' not in result:
        raise RecordError('it could not be read (%s)' % (result.get('msg') or 'no content'))
    try:
        return base64.b64decode(result['content'], validate=True).decode('utf-8')
    except (binascii.Error, ValueError, TypeError):
        raise RecordError('its content is not valid base64 of UTF-8 text') from None


def stop_records(slurped: t.Any, host: str, proxy_hosts: t.Any = None) -> dict[str, list]:
    """Parse what recover read back with slurp: ``{'records': [...], 'problems': [sentence, ...]}``."""
    if isinstance(slurped, Mapping):
        slurped = slurped.get('results', [])
    proxies = _hosts(proxy_hosts)
    records: list[dict] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for result in slurped or []:
        path = '?'
        try:
            if not isinstance(result, Mapping):
                raise RecordError('the slurp result is not a dict')
            item = result.get('item') or {}
            path = str(item.get('path') if isinstance(item, Mapping) else item or result.get('source') or '?')
            record = parse_record(path, _slurped_text(result), host, proxies)
            if record['key'] in seen:
                raise RecordError('instance %s is also recorded in %s' % (record['instance']['name'], seen[record['key']]))
            seen[record['key']] = path
            records.append(record)
        except RecordError as exc:
            problems.append('%s: the emergency_stop record %s is refused: %s. Nothing was started or undrained from it; '
                            'check the file, then delete it or rerun emergency_stop for that instance.' % (host, path, exc))
    return {'records': records, 'problems': problems}


def stop_record_carry(slurped: t.Any, stat: t.Any, instance: t.Any, host: str, proxy_hosts: t.Any, unit_enabled_now: t.Any,
                      drains_now: t.Any) -> dict[str, t.Any]:
    """What a new emergency_stop record keeps of the one already at its path, merged with what the stop finds now.

    ``stat`` and ``slurped`` are the stat and slurp results of that path (the slurp skipped when there is no file, or
    when it is not a regular file of at most RECORD_MAX_BYTES). An earlier record that was never undone (the instance
    was started again without recover) still says what to undo: a unit that was enabled before the first stop (it is
    disabled now), drains, cron lines. It is carried only when it passes parse_record and names this very instance
    (``instance``: name, directory, unit, port, address); else it carries nothing and ``problem`` says why. Returns
    ``unit_was_enabled``, ``drains``, ``cron``, ``earlier`` (when the earlier stop was) and ``problem``.
    """
    if not isinstance(unit_enabled_now, bool):
        raise AnsibleFilterError('stop_record_carry: unit_enabled_now must be true or false, got %r' % (unit_enabled_now,))
    if not isinstance(drains_now, (list, tuple)) or not all(isinstance(d, Mapping) for d in drains_now):
        raise AnsibleFilterError('stop_record_carry: drains_now must be a list of drains, got %r' % (drains_now,))
    if not isinstance(instance, Mapping):
        raise AnsibleFilterError('stop_record_carry: instance must be a dict, got %r' % (instance,))
    try:
        current = {'name': instance.get('name'), 'directory': _clean_dir(instance.get('directory')), 'unit': instance.get('unit'),
                   'port': _port(instance.get('port')), 'address': str(instance.get('address') or host)}
    except ValueError as exc:
        raise AnsibleFilterError('stop_record_carry: instance.%s' % exc) from None
    drains = _unique([dict(d) for d in drains_now])
    out: dict[str, t.Any] = {'unit_was_enabled': unit_enabled_now, 'drains': drains, 'cron': [], 'earlier': None, 'problem': None}
    info = stat.get('stat') if isinstance(stat, Mapping) else None
    if not (isinstance(info, Mapping) and info.get('exists')):
        return out
    path = str(info.get('path') or (slurped.get('source') if isinstance(slurped, Mapping) else None) or '?')
    try:
        size = info.get('size')
        if not info.get('isreg') or not isinstance(size, int) or isinstance(size, bool) or size > RECORD_MAX_BYTES:
            raise RecordError('it is not a regular file of at most %d bytes' % RECORD_MAX_BYTES)
        earlier = parse_record(path, _slurped_text(slurped if isinstance(slurped, Mapping) else {}), str(host), _hosts(proxy_hosts))
        then = {key: earlier['instance'].get(key) for key in current}
        if then != current:
            raise RecordError('it is of another instance (%s; now %s)' % (_described(then), _described(current)))
    except RecordError as exc:
        out['problem'] = ('%s: the earlier emergency_stop record %s is replaced without carrying anything over: %s.'
                          % (host, path, exc))
        return out
    out['unit_was_enabled'] = unit_enabled_now or earlier['unit_was_enabled']
    out['drains'] = _unique(drains + earlier['drains'])
    out['cron'] = list(earlier['cron'])
    out['earlier'] = earlier['stopped_at'] or 'unknown'
    return out


def _unique(items: list[dict]) -> list[dict]:
    out: list[dict] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _hosts(value: t.Any) -> tuple[str, ...]:
    return tuple(str(p) for p in value) if isinstance(value, (list, tuple)) else ()


def _described(inst: Mapping) -> str:
    return ', '.join('%s %s' % (key, json.dumps(inst.get(key))) for key in ('name', 'directory', 'unit', 'port', 'address'))


def unknown_instances(entries: t.Any, hosts: t.Any, hostvars: t.Any) -> list[str]:
    """The ``host:name`` entries that do not name an app_instances entry of one of ``hosts``."""
    known_hosts = set(str(h) for h in hosts or [])
    unknown = []
    for entry in entries or []:
        host, dummy, name = str(entry).partition(':')
        instances = (hostvars[host].get('app_instances') or []) if host in known_hosts else []
        names = [i.get('name') for i in instances if isinstance(i, Mapping)] if isinstance(instances, (list, tuple)) else []
        if name not in names:
            unknown.append(entry)
    return unknown


class FilterModule:
    """Instance lifecycle filters."""

    def filters(self) -> dict[str, t.Callable]:
        return {
            'lifecycle_instances': lifecycle_instances,
            'lifecycle_instance_problems': lifecycle_instance_problems,
            'drain_targets': drain_targets,
            'stop_record_carry': stop_record_carry,
            'stop_record_path': stop_record_path,
            'stop_records': stop_records,
            'unknown_instances': unknown_instances,
        }
