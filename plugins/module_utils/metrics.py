# -*- coding: utf-8 -*-
# Copyright: contributors to opsguard.anqicms
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The memory report as Prometheus metrics, for node_exporter's textfile collector.

* :func:`render` turns the facts of :func:`memory.gather` into the text exposition format (a pure function: no I/O).
* :func:`advance_trend` updates the growth of every service from the previous pass's sample, kept in a small JSON
  state file (:func:`load_state` reads it back as untrusted input, :func:`dump_state` writes it).
* :func:`write_atomic` publishes a file the way the textfile collector needs it: temporary file in the same directory,
  fsync, rename, so a scrape never sees half a file.
* :func:`collect` is one whole pass (gather, trend, render, write); the module and a timer-run script share it.

Growth and ETA: each pass compares a service's RSS with the previous pass's sample. The instantaneous rate is
smoothed with an exponentially weighted moving average whose time constant is TREND_TAU seconds (60 s): at a 10 s
interval one sample moves the average by 15 %, so a garbage-collector sawtooth or a one-off spike does not make a
service "growing". The average alone follows a new leak only within about a minute, too late for a fast one, so the
pass also keeps where the service's current unbroken growth began: once RSS has grown on at least TREND_RUN_PASSES
passes in a row spanning at least TREND_RUN_SECONDS, the rate over that run counts when it is higher than the
average. A spike grows on one pass and a sawtooth drops within a few, so neither forms a run; a leak does, and
its rate is then known 20-30 s after it starts. A gap longer than TREND_MAX_GAP seconds
(a stopped timer, a reboot), a sample that goes back in time, or a service that shrank to less than half (a restart)
starts the service's history afresh. A service counts as growing when its smoothed rate is at least the noise floor
(``leak_mib_per_minute``); only then is ``opsguard_service_seconds_to_limit`` written: its headroom (own cgroup limit
minus its working set, or the available memory of the effective limit when it has no own limit) divided by the rate.
"""

from __future__ import annotations

import json
import math
import os
import stat
import time

TYPE_CHECKING = False  # typing only for type checkers: a watcher run every few seconds pays for every import
if TYPE_CHECKING:  # pragma: no cover
    import typing as t

STATE_VERSION = 1
STATE_MAX_BYTES = 1024 * 1024
STATE_MAX_SERVICES = 2000
TREND_TAU = 60.0
TREND_MAX_GAP = 900.0
TREND_MIN_GAP = 0.5
TREND_RUN_PASSES = 3
TREND_RUN_SECONDS = 20.0
MIB = 1024 * 1024
VERDICT_STATES = ('ok', 'warning', 'critical')
# memory.events counters exported per service: cgroup v2 names; v1's failcnt (times the limit was hit) is "max".
SERVICE_EVENTS = ('high', 'max', 'oom_kill')

# name -> (type, help)
FAMILIES: dict[str, tuple[str, str]] = {
    'opsguard_memory_limit_bytes': ('gauge', 'Effective memory limit: the tightest of RAM and the cgroup limits, by source.'),
    'opsguard_memory_available_bytes': ('gauge', 'Memory available under the effective limit.'),
    'opsguard_memory_available_ratio': ('gauge', 'Available memory as a share (0 to 1) of the effective limit.'),
    'opsguard_memory_verdict': ('gauge', 'Memory verdict of the host: 1 for the current state, 0 for the others.'),
    'opsguard_pressure_some_avg10': ('gauge', 'Memory PSI some avg10 in percent (share of the last 10 s some tasks stalled).'),
    'opsguard_pressure_full_avg10': ('gauge', 'Memory PSI full avg10 in percent (share of the last 10 s all tasks stalled).'),
    'opsguard_oom_kills_total': ('counter', 'Kernel OOM kills of the effective limit\'s scope (its cgroup, or the host).'),
    'opsguard_service_memory_bytes': ('gauge', 'Resident memory (RSS) of a service\'s processes.'),
    'opsguard_service_limit_bytes': ('gauge', 'The service\'s own cgroup memory limit (MemoryMax or a container limit).'),
    'opsguard_service_limit_ratio': ('gauge', 'Working set of the service\'s cgroup as a share (0 to 1) of its own limit.'),
    'opsguard_service_growth_bytes_per_second': ('gauge', 'RSS growth rate of a service: the higher of its 60 s EWMA and its '
                                                          'rate over an unbroken growth of 3 or more passes and 20 s.'),
    'opsguard_service_seconds_to_limit': ('gauge', 'Seconds until a growing service reaches its limit at its current rate.'),
    'opsguard_service_memory_events_total': ('counter', 'memory.events counters of the service\'s limiting cgroup.'),
    'opsguard_collector_duration_seconds': ('gauge', 'Wall time of the collection pass that wrote this file.'),
    'opsguard_collector_last_success_timestamp_seconds': ('gauge', 'Unix time of the last successful collection pass.'),
}


# ---------------------------------------------------------------- exposition format

# Characters other parsers take as line ends (str.splitlines) or that no label should hold: shown as U+FFFD.
_UNPRINTABLE = {c: '\ufffd' for c in list(range(0, 10)) + list(range(11, 32)) + [0x7f, 0x85, 0x2028, 0x2029]
                + list(range(0xD800, 0xE000))}


def clean_label(value: t.Any) -> str:
    """A label value as UTF-8 text without control characters other than newline (before escaping).

    Service names come from process names, executables and units: untrusted. Undecodable bytes (kept by the
    /proc reader as surrogates) and control characters become U+FFFD, so the file is always UTF-8 and every parser,
    however it splits lines, sees one sample per line.
    """
    return ('' if value is None else str(value)).translate(_UNPRINTABLE)


def escape_label(value: t.Any) -> str:
    """A label value for the exposition format: :func:`clean_label`, then backslash, double quote and newline escaped."""
    return clean_label(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def format_value(value: float | int) -> str:
    """A sample value: integers exactly, floats with repr precision, NaN and infinities in the format's spelling."""
    if isinstance(value, bool):
        return '1' if value else '0'
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return 'NaN'
    if math.isinf(value):
        return '+Inf' if value > 0 else '-Inf'
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _series(name: str, labels: dict[str, t.Any] | None) -> str:
    if not labels:
        return name
    return '%s{%s}' % (name, ','.join('%s="%s"' % (key, escape_label(val)) for key, val in labels.items()))


class Exposition:
    """Samples grouped by family, each label set at most once (a duplicate series would make the collector drop the file)."""

    def __init__(self) -> None:
        self.samples: dict[str, list[str]] = {name: [] for name in FAMILIES}
        self.seen: set[str] = set()

    def add(self, name: str, value: float | int | None, **labels: t.Any) -> None:
        if value is None:
            return
        series = _series(name, labels)
        if series in self.seen:
            return
        self.seen.add(series)
        self.samples[name].append('%s %s' % (series, format_value(value)))

    def text(self) -> str:
        lines = []
        for name, (kind, help_text) in FAMILIES.items():
            if not self.samples[name]:
                continue
            lines.append('# HELP %s %s' % (name, help_text.replace('\\', '\\\\').replace('\n', '\\n')))
            lines.append('# TYPE %s %s' % (name, kind))
            lines.extend(self.samples[name])
        return '\n'.join(lines) + '\n' if lines else ''


# ---------------------------------------------------------------- what is exported

def exported_services(facts: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    """Services charged to the limit that are worth a time series: named ones, and any other with its own limit.

    Unnamed processes (kind ``other`` without their own cgroup limit) are left out: their labels would be process
    names, an unbounded set of series.
    """
    return [s for s in facts.get('services') or [] if s.get('kind') != 'other' or (s.get('cgroup') or {}).get('limit_bytes')]


def _ratio(part: int | None, whole: int | None) -> float | None:
    if part is None or not whole or whole <= 0:
        return None
    return round(min(max(part / whole, 0.0), 1.0), 6)


def _service_events(own: dict[str, t.Any]) -> dict[str, int]:
    events = own.get('events') or {}
    result = {}
    for key in SERVICE_EVENTS:
        value = events.get(key)
        if key == 'max' and value is None:
            value = events.get('failcnt')  # cgroup v1: times the usage hit the limit
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            result[key] = value
    return result


def oom_kills(facts: dict[str, t.Any]) -> int | None:
    """OOM kills of the effective limit's scope: the limiting cgroup's counter, or the host's (/proc/vmstat)."""
    oom = facts.get('oom') or {}
    if (facts.get('limit') or {}).get('source', 'meminfo') != 'meminfo' and oom.get('cgroup_oom_kills') is not None:
        return oom['cgroup_oom_kills']
    return oom.get('host_oom_kills')


def render(facts: dict[str, t.Any], trend: dict[str, dict[str, t.Any]] | None = None,
           duration: float | None = None, finished: float | None = None) -> str:
    """The exposition text of one pass: facts of memory.gather, the growth of :func:`advance_trend`, the pass's timing."""
    out = Exposition()
    limit = facts.get('limit') or {}
    out.add('opsguard_memory_limit_bytes', limit.get('bytes'), source=limit.get('source'))
    out.add('opsguard_memory_available_bytes', limit.get('available_bytes'))
    out.add('opsguard_memory_available_ratio', _ratio(limit.get('available_bytes'), limit.get('bytes')))
    if facts.get('verdict') in VERDICT_STATES:
        for state in VERDICT_STATES:
            out.add('opsguard_memory_verdict', 1 if facts['verdict'] == state else 0, state=state)
    pressure = facts.get('pressure') or {}
    for kind in ('some', 'full'):
        avg10 = (pressure.get(kind) or {}).get('avg10')
        out.add('opsguard_pressure_%s_avg10' % kind, avg10)
    out.add('opsguard_oom_kills_total', oom_kills(facts))
    trend = trend or {}
    for service in exported_services(facts):
        name, unit = service['name'], service.get('unit') or ''
        out.add('opsguard_service_memory_bytes', service.get('rss_bytes'), service=name, kind=service.get('kind'), unit=unit)
        own = service.get('cgroup') or {}
        if own.get('limit_bytes'):
            used = own.get('working_set_bytes') if own.get('working_set_bytes') is not None else own.get('usage_bytes')
            out.add('opsguard_service_limit_bytes', own['limit_bytes'], service=name, unit=unit)
            out.add('opsguard_service_limit_ratio', _ratio(used, own['limit_bytes']), service=name)
            for event, count in _service_events(own).items():
                out.add('opsguard_service_memory_events_total', count, service=name, unit=unit, event=event)
        growth = trend.get(name) or {}
        out.add('opsguard_service_growth_bytes_per_second', growth.get('rate'), service=name)
        out.add('opsguard_service_seconds_to_limit', growth.get('seconds_to_limit'), service=name)
    if duration is not None:
        out.add('opsguard_collector_duration_seconds', round(duration, 6))
    if finished is not None:
        out.add('opsguard_collector_last_success_timestamp_seconds', round(finished, 3))
    return out.text()


# ---------------------------------------------------------------- trend state

def _finite(value: t.Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_RUN_KEYS = {'run_t', 'run_bytes', 'run_n'}
_STATE_KEYS = {'t', 'bytes', 'rate'} | _RUN_KEYS


def _byte_count(value: t.Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63


def parse_state(raw: bytes) -> tuple[dict[str, dict[str, float]], str | None]:
    """``(samples, problem)``: the per-service samples of a state file's bytes, or ``({}, why)`` when they are not valid.

    The file is untrusted input (another process may have written it, a crash may have cut it): size, JSON, schema
    and every number are checked; anything wrong discards the whole file, which the pass then replaces.
    """
    if len(raw) > STATE_MAX_BYTES:
        return {}, 'is larger than %d bytes' % STATE_MAX_BYTES
    try:
        data = json.loads(raw.decode('utf-8'))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return {}, 'is not JSON (%s)' % str(exc)[:120]
    if not isinstance(data, dict) or data.get('version') != STATE_VERSION or not isinstance(data.get('services'), dict):
        return {}, 'is not an opsguard trend state of version %d' % STATE_VERSION
    services = data['services']
    if len(services) > STATE_MAX_SERVICES:
        return {}, 'holds more than %d services' % STATE_MAX_SERVICES
    result = {}
    for name, entry in services.items():
        if not isinstance(entry, dict) or set(entry) - _STATE_KEYS or (set(entry) & _RUN_KEYS and not _RUN_KEYS <= set(entry)):
            return {}, 'has an entry of unexpected shape'
        when, size, rate = entry.get('t'), entry.get('bytes'), entry.get('rate', 0.0)
        if not (_finite(when) and when > 0 and _byte_count(size) and _finite(rate) and abs(rate) < 1 << 53):
            return {}, 'has an entry with an invalid number'
        sample = {'t': float(when), 'bytes': size, 'rate': float(rate)}
        if 'run_t' in entry:
            run_t, run_bytes, run_n = entry['run_t'], entry['run_bytes'], entry['run_n']
            if not (_finite(run_t) and 0 < run_t <= when and _byte_count(run_bytes) and run_bytes <= size
                    and isinstance(run_n, int) and not isinstance(run_n, bool) and 1 <= run_n <= 1 << 31):
                return {}, 'has an entry with an invalid number'
            sample.update(run_t=float(run_t), run_bytes=run_bytes, run_n=run_n)
        result[name] = sample
    return result, None


def load_state(path: str, notes: list[str]) -> dict[str, dict[str, float]]:
    """The previous samples from ``path``; empty (with a note, except when the file does not exist yet) when unusable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        notes.append('Trend state %s cannot be read (%s); growth starts afresh.' % (path, exc.strerror or exc))
        return {}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            notes.append('Trend state %s is not a regular file; it is ignored.' % path)
            return {}
        raw = os.read(fd, STATE_MAX_BYTES + 1)
    except OSError as exc:
        notes.append('Trend state %s cannot be read (%s); growth starts afresh.' % (path, exc.strerror or exc))
        return {}
    finally:
        os.close(fd)
    samples, problem = parse_state(raw)
    if problem:
        notes.append('Trend state %s %s; it is replaced and growth starts afresh.' % (path, problem))
    return samples


def dump_state(samples: dict[str, dict[str, float]]) -> str:
    return json.dumps({'version': STATE_VERSION, 'services': samples}, sort_keys=True, separators=(',', ':')) + '\n'


def advance_trend(previous: dict[str, dict[str, float]], facts: dict[str, t.Any], now: float,
                  floor_bytes_per_second: float) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, t.Any]]]:
    """``(new_state, growth)`` after one pass at time ``now`` (seconds since the epoch).

    ``growth[name]`` has ``rate`` (bytes per second: the smoothed rate, or the rate over the service's current unbroken
    growth when that run is long enough and faster; None on a service's first sample), ``growing`` and
    ``seconds_to_limit`` (None unless growing at or above ``floor_bytes_per_second`` with a known headroom).
    """
    limit = facts.get('limit') or {}
    state: dict[str, dict[str, float]] = {}
    growth: dict[str, dict[str, t.Any]] = {}
    for service in exported_services(facts):
        name, size = service['name'], service.get('rss_bytes')
        if not isinstance(size, int) or size < 0:
            continue
        before = previous.get(name)
        rate = run_rate = None
        if before is not None:
            gap = now - before['t']
            restarted = size < before['bytes'] / 2
            if TREND_MIN_GAP <= gap <= TREND_MAX_GAP and not restarted:
                instant = (size - before['bytes']) / gap
                weight = 1.0 - math.exp(-gap / TREND_TAU)
                rate = before['rate'] + weight * (instant - before['rate']) if 'rate' in before else instant
                state[name] = {'t': round(now, 3), 'bytes': size, 'rate': round(rate, 3)}
                if size > before['bytes']:  # the growth run goes on (or starts at the previous sample)
                    run = {'run_t': before.get('run_t', before['t']), 'run_bytes': before.get('run_bytes', before['bytes']),
                           'run_n': min(before.get('run_n', 0) + 1, 1 << 31)}
                    state[name].update(run)
                    span = now - run['run_t']
                    if run['run_n'] >= TREND_RUN_PASSES and span >= TREND_RUN_SECONDS:
                        run_rate = (size - run['run_bytes']) / span
            elif 0 <= gap < TREND_MIN_GAP and not restarted:
                state[name] = before  # two passes in the same instant: keep the older sample
                rate = before['rate']
        if name not in state:
            state[name] = {'t': round(now, 3), 'bytes': size, 'rate': 0.0}
        if rate is not None and run_rate is not None and run_rate > rate:
            rate = run_rate
        own = service.get('cgroup') or {}
        if own.get('limit_bytes'):
            used = own.get('working_set_bytes') if own.get('working_set_bytes') is not None else own.get('usage_bytes')
            headroom = own['limit_bytes'] - used if used is not None else None
        else:
            headroom = limit.get('available_bytes')
        growing = rate is not None and rate >= floor_bytes_per_second and rate > 0
        eta = round(max(headroom, 0) / rate, 1) if growing and headroom is not None else None
        growth[name] = {'rate': round(rate, 3) if rate is not None else None, 'growing': growing, 'seconds_to_limit': eta}
    return state, growth


# ---------------------------------------------------------------- files

def create_temporary(directory: str, name: str) -> tuple[int, str]:
    """A new, exclusive temporary file for ``name`` in ``directory`` (a hidden name node_exporter does not read)."""
    for _attempt in range(100):
        tmp = os.path.join(directory, '.%s.%d.%s.tmp' % (name, os.getpid(), os.urandom(4).hex()))
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError('no free temporary name for %s in %s' % (name, directory))


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text``: a temporary file in the same directory, fsync, chmod, rename.

    A reader (a scrape) sees the old file or the new one, never a part. The directory is not fsynced: after a power
    loss the previous measurements may come back, which the next pass replaces. (No ``tempfile`` import: a watcher
    that starts a fresh interpreter every few seconds pays for every import.)
    """
    directory = os.path.dirname(path) or '.'
    fd, tmp = create_temporary(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def check_paths(textfile: str | None, state_file: str | None) -> list[str]:
    """Refusals of the textfile and state_file options, each naming the option and the fix (nothing is written)."""
    errors = []
    for option, path in (('textfile', textfile), ('state_file', state_file)):
        if path is None:
            continue
        if not isinstance(path, str) or not path or '\0' in path or any(c in path for c in '\n\r'):
            errors.append('%s=%r: give an absolute path without NUL or newline characters.' % (option, path))
            continue
        if not os.path.isabs(path) or len(path) > 4096:
            errors.append('%s=%s: give an absolute path (at most 4096 characters).' % (option, path[:200]))
            continue
        if option == 'textfile' and not os.path.basename(path).endswith('.prom'):
            errors.append('textfile=%s: the file name must end in .prom (node_exporter\'s textfile collector reads only those).' % path)
            continue
        if option == 'state_file' and path.endswith('.prom'):
            errors.append('state_file=%s must not end in .prom: node_exporter would read it as metrics.' % path)
            continue
        if path.endswith('/') or os.path.isdir(path):
            errors.append('%s=%s is a directory; give a file path in it.' % (option, path))
            continue
        if not os.path.isdir(os.path.dirname(path)):
            errors.append('%s=%s: directory %s does not exist; create it first (node_exporter\'s '
                          '--collector.textfile.directory).' % (option, path, os.path.dirname(path)))
    if textfile and state_file and textfile == state_file:
        errors.append('state_file must differ from textfile.')
    if state_file and not textfile:
        errors.append('state_file=%s is used only with textfile; give textfile too.' % state_file)
    return errors


def default_state_file(textfile: str) -> str:
    """``/var/lib/node_exporter/opsguard.prom`` -> ``/var/lib/node_exporter/opsguard.state.json``."""
    return textfile[:-len('.prom')] + '.state.json' if textfile.endswith('.prom') else textfile + '.state.json'


def collect(gather: t.Callable[[], dict[str, t.Any]], textfile: str, state_file: str | None = None,
            floor_bytes_per_second: float = 4 * MIB / 60.0, write: bool = True,
            clock: t.Callable[[], float] = time.time, timer: t.Callable[[], float] = time.monotonic) -> dict[str, t.Any]:
    """One pass: gather the facts, advance the trend from the state file, write the metrics and the new state.

    Returns the facts with ``growth_bytes_per_second`` and ``seconds_to_limit`` on every exported service and a
    ``textfile`` summary. ``write=False`` (check mode) renders everything and writes nothing.
    """
    started = timer()
    facts = gather()
    state_path = state_file or default_state_file(textfile)
    notes = facts.setdefault('notes', [])
    now = clock()
    previous = load_state(state_path, notes)
    state, growth = advance_trend(previous, facts, now, floor_bytes_per_second)
    for service in facts.get('services') or []:
        entry = growth.get(service['name'])
        service['growth_bytes_per_second'] = entry['rate'] if entry else None
        service['seconds_to_limit'] = entry['seconds_to_limit'] if entry else None
    text = render(facts, growth, duration=timer() - started, finished=now)
    if write:
        write_atomic(state_path, dump_state(state))
        write_atomic(textfile, text)
    facts['textfile'] = {'path': textfile, 'state_file': state_path, 'written': write,
                         'series': sum(1 for line in text.splitlines() if line and not line.startswith('#')),
                         'bytes': len(text.encode('utf-8'))}
    return facts
