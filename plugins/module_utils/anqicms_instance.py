# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an AnQiCMS instance says about itself: its config.json, its sites (the websites table), whether it runs."""

from __future__ import annotations

import json
import os

from ansible_collections.opsguard.anqicms.plugins.module_utils import paths, procfs
from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import BackupError


def running_pids(exe: str, proc: str = '/proc') -> list:
    """PIDs whose resolved /proc/PID/exe is ``exe`` (resolved): the instance runs when this is not empty."""
    return procfs.pids_by_exe(paths.resolve(exe, 'exe', BackupError), proc)


def parse_site_mysql(text: str | None, default: dict, site_id: int) -> dict:
    """Connection of a site from the websites.mysql JSON; ``use_default`` takes the default credentials."""
    if site_id == 1 or not text:
        if site_id != 1 and not text:
            raise BackupError('site %d has an empty websites.mysql column: its database is unknown' % site_id)
        return dict(default)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BackupError('site %d: websites.mysql is not valid JSON (%s)' % (site_id, exc)) from None
    except RecursionError:
        raise BackupError('site %d: websites.mysql is not valid JSON (nested too deeply)' % site_id) from None
    if not isinstance(data, dict) or not data.get('database'):
        raise BackupError('site %d: websites.mysql names no database' % site_id)
    _config_strings(data, 'websites.mysql of site %d' % site_id)
    if data.get('use_default'):
        conn = dict(default)
        conn['database'] = data['database']
        return conn
    return {'database': data['database'], 'user': data.get('user') or default.get('user'),
            'password': data.get('password') if data.get('password') is not None else default.get('password'),
            'host': data.get('host') or default.get('host'),
            'port': config_port(data.get('port'), 'websites.mysql port of site %d' % site_id, default.get('port') or 3306)}


def config_port(value, where: str, default: int) -> int:
    """A TCP port read from configuration (a number or a string of digits); unset or 0 is ``default``."""
    if value is None or value == '' or value == 0:
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise BackupError('%s is %.60r, which is no TCP port (1-65535): repair it' % (where, value))
    return value


def _config_strings(section: dict, where: str) -> None:
    """Refuse connection settings that are not strings (AnQiCMS itself could not read them either)."""
    for key in ('database', 'user', 'password', 'host'):
        value = section.get(key)
        if value is not None and not isinstance(value, str):
            raise BackupError('%s: %s must be a string, not %s' % (where, key, type(value).__name__))
        if isinstance(value, str) and '\0' in value:
            raise BackupError('%s: %s contains a NUL byte' % (where, key))


def read_instance_config(path: str) -> dict:
    """The mysql section of ``<path>/config.json`` as a connection dict."""
    config_path = os.path.join(path, 'config.json')
    try:
        with open(config_path, 'rb') as handle:
            data = json.loads(handle.read(1024 * 1024).decode('utf-8'))
    except FileNotFoundError:
        raise BackupError('%s does not exist: is %s the install directory of an AnQiCMS instance?' % (config_path, path)) from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BackupError('%s is not valid JSON (%s): repair it before backing up' % (config_path, exc)) from None
    except OSError as exc:
        raise BackupError('%s cannot be read (%s)' % (config_path, exc.strerror or exc)) from None
    mysql = data.get('mysql') if isinstance(data, dict) else None
    if not isinstance(mysql, dict) or not mysql.get('database'):
        raise BackupError('%s has no mysql.database: the instance is not installed yet (nothing to back up)' % config_path)
    _config_strings(mysql, '%s (mysql section)' % config_path)
    server = data.get('server') if isinstance(data.get('server'), dict) else {}
    return {'database': mysql.get('database'), 'user': mysql.get('user') or '', 'password': mysql.get('password') or '',
            'host': mysql.get('host') or '127.0.0.1', 'port': config_port(mysql.get('port'), '%s mysql.port' % config_path, 3306),
            'server_port': config_port(server.get('port'), '%s server.port' % config_path, 8001)}


def connection(conn: dict, login: dict | None) -> dict:
    """Client connection for ``conn``, with the login_* overrides of the task applied."""
    out = {'user': conn.get('user'), 'password': conn.get('password'), 'host': conn.get('host'), 'port': conn.get('port')}
    if login:
        if login.get('user') not in (None, ''):
            # Another user: the configured password belongs to the configured user, never to this one.
            out['password'] = None
        for key in ('user', 'password', 'host', 'port', 'socket'):
            if login.get(key) not in (None, ''):
                out[key] = login[key]
        if out.get('socket'):
            out['host'] = out['port'] = None
    return out


def discover_sites(rows: list, default: dict, install_path: str) -> list:
    """Sites from rows of ``SELECT id, HEX(root_path), HEX(name), HEX(mysql), status FROM websites``."""
    sites = []
    for row in rows:
        site_id = int(row[0])
        root = bytes.fromhex(row[1] or '').decode('utf-8', 'replace')
        name = bytes.fromhex(row[2] or '').decode('utf-8', 'replace')
        mysql_text = bytes.fromhex(row[3] or '').decode('utf-8', 'replace')
        conn = parse_site_mysql(mysql_text, default, site_id)
        if site_id == 1:
            root = install_path
        sites.append({'id': site_id, 'name': name, 'root': root, 'conn': conn, 'database': conn['database'],
                      'status': int(row[4]) if row[4] not in (None, '') else None})
    if not any(s['id'] == 1 for s in sites):
        sites.insert(0, {'id': 1, 'name': '', 'root': install_path, 'conn': dict(default), 'database': default['database'],
                         'status': None})
    return sites


SITES_SQL = "SELECT id, HEX(root_path), HEX(name), HEX(IFNULL(mysql, X'')), status FROM websites ORDER BY id;"
