# Copyright: opsguard maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters memory_budget, mariadb_sizing, mariadb_restart_for, mariadb_live_changes and mariadb_drop_ins: how a host's
memory is split, which MariaDB settings need a restart or a live change and which drop-in holds each setting (documented
in memory_budget.yml, mariadb_sizing.yml, mariadb_restart_for.yml, mariadb_live_changes.yml and mariadb_drop_ins.yml;
the formulas are those of docs/roles/app.md and docs/roles/database.md)."""

from __future__ import annotations

import math
import posixpath
import re
import typing as t

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.opsguard.anqicms.plugins.plugin_utils.naming import NamingError, normalize_instances

MIB = 1 << 20
POOL_ALIGN = 64 * MIB
# Memory MariaDB needs per connection besides the configured buffers (net buffers, THD).
CONNECTION_OVERHEAD = 32768
MAX_BYTES = 1 << 60
MAX_COUNT = 1000000
_DIGITS = re.compile(r'^\s*[0-9]+\s*$')
# A MariaDB option name as an option file takes it ('.' for connection-prefixed options).
_OPTION_NAME = re.compile(r'^[A-Za-z][A-Za-z0-9_.-]*\Z')
# MariaDB reads option files line by line into a 4 KiB buffer; a longer line is cut into pieces.
MAX_OPTION_LINE = 4000
# A string value is written in double quotes (with \\ and \" escaped) when written bare it would not read back as it is:
# '#' starts a comment, quotes and backslashes are interpreted, surrounding blanks are stripped.
_NEEDS_QUOTES = re.compile(r'[#"\'\\]|^\s|\s\Z|^\Z')


def _whole(value: t.Any, name: str, maximum: int = MAX_BYTES, minimum: int = 0, unit: str = 'bytes') -> int:
    """An integer given as int, whole float or digit string, within [minimum, maximum]; else a refusal naming it."""
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _DIGITS.match(value) and len(value.strip()) <= 20:
        number = int(value)
    if number is None or not minimum <= number <= maximum:
        raise AnsibleFilterError('%s=%r is not a whole number of %s from %d to %d' % (name, value, unit, minimum, maximum))
    return number


def _ratio(value: t.Any, name: str) -> float:
    """A number from 0 to 1 (a numeric string too, as extra vars give); else a refusal naming it."""
    number: float | None = None
    if not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
    if number is None or not math.isfinite(number) or not 0 <= number <= 1:
        raise AnsibleFilterError('%s=%r is not a number from 0 to 1' % (name, value))
    return number


def _flag(value: t.Any, name: str) -> bool:
    try:
        return boolean(value, strict=True)
    except TypeError:
        raise AnsibleFilterError('%s=%r is not true or false' % (name, value)) from None


def _instances(instances: t.Any, variable: str) -> list[dict[str, t.Any]]:
    try:
        return normalize_instances(instances, variable=variable)
    except NamingError as err:
        raise AnsibleFilterError(str(err)) from None


def _total(total_bytes: t.Any, memory_facts: t.Any) -> tuple[int, str]:
    if total_bytes is not None:
        return _whole(total_bytes, 'app_memory_total_bytes'), 'app_memory_total_bytes'
    limit = memory_facts.get('limit') if isinstance(memory_facts, t.Mapping) else None
    if not isinstance(limit, t.Mapping) or limit.get('bytes') is None:
        raise AnsibleFilterError('app_memory_total_bytes is not set and no memory facts with limit.bytes were given: '
                                 'run opsguard.anqicms.memory_facts first or set app_memory_total_bytes')
    return _whole(limit['bytes'], 'opsguard_memory.limit.bytes'), str(limit.get('source') or 'memory_facts')


def memory_budget(instances: t.Any, total_bytes: t.Any = None, memory_facts: t.Any = None, os_reserve_bytes: t.Any = None,
                  os_reserve_ratio: t.Any = 0.1, os_reserve_min_bytes: t.Any = 268435456, database_bytes: t.Any = None,
                  database_ratio: t.Any = 0.35, database_host: t.Any = False, instance_min_bytes: t.Any = 134217728,
                  high_ratio: t.Any = 0.9, gomemlimit_ratio: t.Any = 0.8) -> dict[str, t.Any]:
    """The app role's budget (docs/roles/app.md): the host's memory split into OS reserve, database and instances.

    ``fits`` tells whether the budget holds; the numbers are returned either way so that a refusal can show them.
    """
    entries = _instances(instances, 'app_instances')
    total, source = _total(total_bytes, memory_facts)
    reserve_ratio = _ratio(os_reserve_ratio, 'app_memory_os_reserve_ratio')
    reserve_min = _whole(os_reserve_min_bytes, 'app_memory_os_reserve_min_bytes')
    db_ratio = _ratio(database_ratio, 'app_memory_database_ratio')
    on_database_host = _flag(database_host, 'database_host')
    minimum = _whole(instance_min_bytes, 'app_memory_instance_min_bytes')
    high = _ratio(high_ratio, 'app_memory_high_ratio')
    gomem = _ratio(gomemlimit_ratio, 'app_gomemlimit_ratio')

    if os_reserve_bytes is not None:
        reserve = _whole(os_reserve_bytes, 'app_memory_os_reserve_bytes')
    else:
        reserve = max(reserve_min, int(total * reserve_ratio))
    if database_bytes is not None:
        database = _whole(database_bytes, 'app_memory_database_bytes')
    else:
        database = int(total * db_ratio) if on_database_host else 0
    apps = total - reserve - database

    explicit = {}
    for entry in entries:
        if entry['memory_max_bytes'] is not None:
            explicit[entry['name']] = _whole(entry['memory_max_bytes'], 'app_instances %s memory_max_bytes' % entry['name'])
    n_auto = len(entries) - len(explicit)
    auto_each = (apps - sum(explicit.values())) // max(n_auto, 1) // MIB * MIB
    per_instance = {}
    for entry in entries:
        memory_max = explicit.get(entry['name'], auto_each)
        per_instance[entry['name']] = {
            'memory_max_bytes': memory_max,
            'memory_high_bytes': int(memory_max * high) // MIB * MIB,
            'gomemlimit_bytes': int(memory_max * gomem) // MIB * MIB,
        }
    maxes = [b['memory_max_bytes'] for b in per_instance.values()]
    fits = (total > 0 and apps > 0 and sum(maxes) <= apps and (not maxes or min(maxes) >= minimum)
            and gomem < high <= 1)
    return {
        'total_bytes': total,
        'source': source,
        'os_reserve_bytes': reserve,
        'database_bytes': database,
        'apps_bytes': apps,
        'instance_min_bytes': minimum,
        'instances': per_instance,
        'fits': fits,
    }


def mariadb_sizing(instances: t.Any, pool_per_site: t.Any = 20, app_replicas: t.Any = 1, connection_headroom: t.Any = 20,
                   max_connections: t.Any = None, memory_bytes: t.Any = None, budget: t.Any = None,
                   base_bytes: t.Any = 100663296, buffer_pool_min_bytes: t.Any = 67108864, performance_schema: t.Any = None,
                   small_host_bytes: t.Any = 4294967296, sort_buffer_size: t.Any = 262144, join_buffer_size: t.Any = 262144,
                   read_buffer_size: t.Any = 131072, read_rnd_buffer_size: t.Any = 262144,
                   thread_stack_bytes: t.Any = 299008) -> dict[str, t.Any]:
    """The database role's sizing (docs/roles/database.md): connections from the AnQiCMS pools, buffer pool from the rest.

    ``fits`` tells whether max_connections covers the pools and the buffer pool reaches its minimum.
    """
    entries = _instances(instances, 'database_instances')
    pool = _whole(pool_per_site, 'database_pool_per_site', MAX_COUNT, unit='connections')
    replicas = _whole(app_replicas, 'database_app_replicas', MAX_COUNT, unit='processes')
    headroom = _whole(connection_headroom, 'database_connection_headroom', MAX_COUNT, unit='connections')
    budget = budget if isinstance(budget, t.Mapping) else None
    if memory_bytes is not None:
        memory = _whole(memory_bytes, 'database_memory_bytes')
    elif budget is not None and budget.get('database_bytes') is not None:
        memory = _whole(budget['database_bytes'], 'app_budget.database_bytes')
    else:
        raise AnsibleFilterError('database_memory_bytes is not set and no app_budget with database_bytes was given: '
                                 'set database_memory_bytes or compute the budget first (role opsguard.anqicms.app, budget.yml)')
    total = _whole(budget['total_bytes'], 'app_budget.total_bytes') if budget is not None and budget.get('total_bytes') is not None else 0
    base = _whole(base_bytes, 'database_base_bytes')
    pool_min = _whole(buffer_pool_min_bytes, 'database_buffer_pool_min_bytes')
    small_host = _whole(small_host_bytes, 'database_small_host_bytes')
    per_connection = sum(_whole(value, name) for name, value in (
        ('database_sort_buffer_size', sort_buffer_size), ('database_join_buffer_size', join_buffer_size),
        ('database_read_buffer_size', read_buffer_size), ('database_read_rnd_buffer_size', read_rnd_buffer_size),
        ('database_thread_stack_bytes', thread_stack_bytes))) + CONNECTION_OVERHEAD

    sites = sum(1 + len(entry['sites']) for entry in entries)
    needed = sites * pool * replicas + headroom
    if max_connections is None:
        connections = needed
    else:
        connections = _whole(max_connections, 'database_max_connections', MAX_COUNT, unit='connections')
    buffer_pool = max(memory - base - connections * per_connection, 0) // POOL_ALIGN * POOL_ALIGN
    pfs = _flag(performance_schema, 'database_performance_schema') if performance_schema is not None else total >= small_host
    return {
        'sites': sites,
        'needed_connections': needed,
        'max_connections': connections,
        'memory_bytes': memory,
        'per_connection_bytes': per_connection,
        'innodb_buffer_pool_size': buffer_pool,
        'performance_schema': pfs,
        'fits': connections >= needed and buffer_pool >= pool_min,
    }


def _live_values(live: t.Any, where: str) -> dict[str, t.Any]:
    """Variable name -> live value from the rows of SHOW GLOBAL VARIABLES or a dict."""
    if isinstance(live, t.Mapping):
        return {name: value for name, value in live.items() if isinstance(name, str)}
    if isinstance(live, (list, tuple)) and all(isinstance(row, t.Mapping) and isinstance(row.get('Variable_name'), str)
                                               for row in live):
        return {row['Variable_name']: row.get('Value') for row in live}
    raise AnsibleFilterError('%s: the live values must be the rows of SHOW GLOBAL VARIABLES '
                             '(Variable_name, Value) or a dict, got %s' % (where, type(live).__name__))


def _text(value: t.Any) -> str | None:
    try:
        return str(value)
    except ValueError:  # an integer too long to print
        return None


def _differs(current: dict[str, t.Any], name: t.Any, wanted: t.Any) -> bool:
    """True unless the server reports a value equal to the wanted one, ignoring ASCII case only (ON = on)."""
    if current.get(name) is None:
        return True
    live, want = _text(current[name]), _text(wanted)
    if live is None or want is None:
        return True
    return live != want and not (live.isascii() and want.isascii() and live.lower() == want.lower())


def mariadb_restart_for(settings: t.Any, live: t.Any) -> list[str]:
    """``name: live -> wanted`` for each setting whose live value differs (case-insensitive) from the wanted one.

    ``live`` is the rows of ``SHOW GLOBAL VARIABLES`` (dicts with Variable_name and Value) or a dict name -> value;
    a setting the server does not report counts as different ('unset').
    """
    if not isinstance(settings, t.Mapping):
        raise AnsibleFilterError('mariadb_restart_for needs a dict of settings (name -> value), got %s' % type(settings).__name__)
    current = _live_values(live, 'mariadb_restart_for')
    return ['%s: %s -> %s' % (name, 'unset' if current.get(name) is None else _text(current[name]), _text(wanted))
            for name, wanted in settings.items() if _differs(current, name, wanted)]


def mariadb_live_changes(settings: t.Any, live: t.Any) -> dict[str, t.Any]:
    """The settings (name -> wanted) whose live value differs, compared as mariadb_restart_for does."""
    if not isinstance(settings, t.Mapping):
        raise AnsibleFilterError('mariadb_live_changes needs a dict of settings (name -> value), got %s' % type(settings).__name__)
    current = _live_values(live, 'mariadb_live_changes')
    return {name: wanted for name, wanted in settings.items() if _differs(current, name, wanted)}


def _canonical(name: t.Any) -> str:
    """How MariaDB reads an option name: '-' and '_' are the same, case does not matter."""
    return str(name).replace('-', '_').lower()


def _option_value(name: str, value: t.Any) -> str:
    """The text of one option-file value, quoted when needed; a value MariaDB could not read back is refused."""
    where = 'database_extra_settings %s' % name
    if isinstance(value, bool):
        return 'ON' if value else 'OFF'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AnsibleFilterError('%s=%r is not a finite number' % (where, value))
        return repr(value)
    if not isinstance(value, str):
        raise AnsibleFilterError('%s=%r is not a string, number or true/false (a setting without a value is written as '
                                 'ON or 1)' % (where, value))
    if not value.isprintable():
        raise AnsibleFilterError('%s=%r holds a newline, tab, NUL or another control character, which an option file cannot '
                                 'hold' % (where, value))
    if _NEEDS_QUOTES.search(value):
        return '"%s"' % value.replace('\\', '\\\\').replace('"', '\\"')
    return value


def _config_paths(sized_path: t.Any, extra_path: t.Any) -> None:
    """The extra drop-in must be read after the sized one: same directory, a later name, and .cnf (!includedir reads only those)."""
    if sized_path is None or extra_path is None:
        return
    for name, path in (('database_config_path', sized_path), ('database_extra_config_path', extra_path)):
        if not isinstance(path, str) or not posixpath.isabs(path) or not path.endswith('.cnf') or not path.isprintable():
            raise AnsibleFilterError('%s=%r is not an absolute path of a .cnf file (MariaDB reads only *.cnf from an '
                                     'included directory)' % (name, path))
    sized_dir, sized_name = posixpath.split(posixpath.normpath(sized_path))
    extra_dir, extra_name = posixpath.split(posixpath.normpath(extra_path))
    if extra_dir == sized_dir and extra_name.encode('utf-8') <= sized_name.encode('utf-8'):
        raise AnsibleFilterError('database_extra_config_path=%r is read before (or is) database_config_path=%r: MariaDB reads an '
                                 'included directory in name order and the later file wins, so the extra settings would not '
                                 'override the sized ones. Fix: give the extra drop-in a name that sorts after %r'
                                 % (extra_path, sized_path, sized_name))


def mariadb_drop_ins(extra: t.Any, dynamic: t.Any = None, static: t.Any = None, config_path: t.Any = None,
                     extra_config_path: t.Any = None) -> dict[str, t.Any]:
    """Which drop-in holds each setting: the sized one (``dynamic`` + ``static``) or the extra one (``extra``).

    A setting of ``extra`` replaces the sized setting of the same name (MariaDB ignores case and '-'/'_' in names): it leaves
    the sized drop-in, is neither set live nor compared for a restart, and is applied by the restart that a change of
    the extra drop-in causes. Every name and value of ``extra`` is checked; the first bad one fails with a sentence
    naming it.
    """
    if extra is None:
        extra = {}
    if not isinstance(extra, t.Mapping):
        raise AnsibleFilterError('database_extra_settings must be a dict of [mysqld] settings (name: value), got %s'
                                 % type(extra).__name__)
    sized: dict[str, dict[str, t.Any]] = {}
    for what, given in (('dynamic', dynamic), ('static', static)):
        if given is None:
            given = {}
        if not isinstance(given, t.Mapping):
            raise AnsibleFilterError('mariadb_drop_ins: %s must be a dict of settings (name -> value), got %s'
                                     % (what, type(given).__name__))
        sized[what] = dict(given)
    _config_paths(config_path, extra_config_path)

    rendered: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in sorted(extra, key=str):
        if not isinstance(name, str) or not _OPTION_NAME.match(name):
            raise AnsibleFilterError('database_extra_settings: %r is not a MariaDB option name (a letter, then letters, '
                                     "digits, '_', '-' or '.'; no '=', '[', blanks or control characters)" % (name,))
        canonical = _canonical(name)
        if canonical in seen:
            raise AnsibleFilterError("database_extra_settings names %r and %r: MariaDB reads both as %s (case and '-'/'_' do "
                                     'not matter). Fix: keep one of them' % (seen[canonical], name, canonical))
        seen[canonical] = name
        value = _option_value(name, extra[name])
        size = len(('%s = %s' % (name, value)).encode('utf-8'))
        if size > MAX_OPTION_LINE:
            raise AnsibleFilterError('database_extra_settings %s: its line in the option file would be %d bytes; MariaDB reads '
                                     'at most %d bytes per line' % (name, size, MAX_OPTION_LINE))
        rendered[name] = value

    def kept(settings: dict[str, t.Any]) -> dict[str, t.Any]:
        return {name: value for name, value in settings.items() if _canonical(name) not in seen}

    replaced = sorted(str(name) for settings in sized.values() for name in settings if _canonical(name) in seen)
    return {
        'sized': dict(sorted(dict(kept(sized['dynamic']), **kept(sized['static'])).items())),
        'dynamic': kept(sized['dynamic']),
        'static': kept(sized['static']),
        'extra': rendered,
        'replaced': replaced,
    }


class FilterModule:
    """Memory budget of an AnQiCMS host and MariaDB sizing."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {'memory_budget': memory_budget, 'mariadb_sizing': mariadb_sizing, 'mariadb_restart_for': mariadb_restart_for,
                'mariadb_live_changes': mariadb_live_changes, 'mariadb_drop_ins': mariadb_drop_ins}
