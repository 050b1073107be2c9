# Copyright: opsguard maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters anqicms_instances (app_instances with every derived name filled in) and anqicms_port_clashes (instance ports
held by another process); documented in anqicms_instances.yml and anqicms_port_clashes.yml."""

from __future__ import annotations

import re
import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.plugin_utils.naming import DEFAULT_BASE_DIR, NamingError, normalize_instances


def anqicms_instances(entries: t.Any, base_dir: t.Any = DEFAULT_BASE_DIR, variable: str = 'app_instances') -> list[dict[str, t.Any]]:
    """The normalized instance list; a bad entry raises AnsibleFilterError naming it."""
    try:
        return normalize_instances(entries, base_dir, variable)
    except NamingError as err:
        raise AnsibleFilterError(str(err)) from None


# A line of `ss -Htlnp`: State Recv-Q Send-Q Local-Address:Port Peer-Address:Port Process
_LISTEN_PORT = re.compile(r'^\S+\s+\d+\s+\d+\s+\S*:(\d+)\s')
_PID = re.compile(r'pid=(\d+)')
_MAIN_PID = re.compile(r'MainPID=([1-9][0-9]*)')
_USERS = re.compile(r'users:.*')


def _lines(value: t.Any, what: str) -> list[str]:
    if isinstance(value, str):
        return value.splitlines()
    if isinstance(value, (list, tuple)) and all(isinstance(line, str) for line in value):
        return list(value)
    raise AnsibleFilterError('anqicms_port_clashes: %s must be text or a list of lines, got %s' % (what, type(value).__name__))


def anqicms_port_clashes(instances: t.Any, listeners: t.Any, unit_status: t.Any = '') -> list[str]:
    """One sentence per instance port held by a process that is not the main process of one of the instances' units.

    ``listeners`` is the output of ``ss -Htlnp``; ``unit_status`` that of ``systemctl show --property=Id,MainPID`` for the
    instances' units.
    """
    entries = anqicms_instances(instances)
    own = set(_MAIN_PID.findall('\n'.join(_lines(unit_status, 'unit_status'))))
    lines = _lines(listeners, 'listeners')
    out: list[str] = []
    for entry in entries:
        if entry.get('port') in (None, ''):
            continue
        for line in lines:
            match = _LISTEN_PORT.match(line)
            if not match or int(match.group(1)) != int(entry['port']):
                continue
            if own.intersection(_PID.findall(line)):
                continue
            holder = _USERS.search(line)
            sentence = '%s: port %s is held by %s' % (entry['name'], entry['port'], holder.group(0) if holder else 'an unknown process')
            if sentence not in out:
                out.append(sentence)
    return out


class FilterModule:
    """AnQiCMS instance naming."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {'anqicms_instances': anqicms_instances, 'anqicms_port_clashes': anqicms_port_clashes}
