# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus metrics of the memory report (plugins/module_utils/metrics.py): the exposition text parsed back by a strict
parser, hostile label values, the trend state read back as untrusted input (saved fixtures), the atomic write."""

from __future__ import annotations

import copy
import json
import math
import os
import stat
import typing as t

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.opsguard.anqicms.plugins.module_utils import memory, metrics
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.exposition_parser import ExpositionError, parse, value
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.memory_helpers import (
    MIB,
    SavedProcess,
    root,
    saved,
    thresholds,
)

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'metrics')
NOW = 1795775010.0


def _v1_facts(tmp_path: t.Any, shop_mib: float = 245) -> dict[str, t.Any]:
    table = [SavedProcess(4242, 1, 'anqicms', '/opt/a/anqicms', int(shop_mib * MIB)),
             SavedProcess(777, 1, 'mariadbd', '/usr/sbin/mariadbd', 80 * MIB),
             SavedProcess(900, 1, 'bash', '/usr/bin/bash', 6 * MIB)]
    return memory.gather(thresholds(), saved(table, root('v1_container'), tmp_path), kernel_messages=False, detailed=False)


def _service(name: str, rss: int, kind: str = 'anqicms', limit: int | None = None, used: int | None = None,
             unit: str | None = 'shop.service') -> dict[str, t.Any]:
    own = {'limit_bytes': limit, 'working_set_bytes': used, 'usage_bytes': used, 'events': {'high': 0, 'max': 3, 'oom_kill': 1}} if limit else None
    return {'name': name, 'kind': kind, 'unit': unit, 'rss_bytes': rss, 'cgroup': own}


def _facts(services: list[dict[str, t.Any]], available: int = 400 * MIB) -> dict[str, t.Any]:
    return {'limit': {'bytes': 1024 * MIB, 'source': 'cgroup v2', 'available_bytes': available}, 'verdict': 'warning',
            'pressure': {'some': {'avg10': 1.5}, 'full': {'avg10': 0.25}}, 'oom': {'host_oom_kills': 7, 'cgroup_oom_kills': 2},
            'services': services, 'notes': []}


# ---------------------------------------------------------------- rendering


def test_a_v1_container_renders_every_documented_family_parsed_back(tmp_path: t.Any) -> None:
    facts = _v1_facts(tmp_path)
    text = metrics.render(facts, {'anqicms:/opt/a': {'rate': 1048576.0, 'seconds_to_limit': 5.5}}, duration=0.0123, finished=NOW)
    families = parse(text)
    assert value(families, 'opsguard_memory_limit_bytes', source='cgroup v1') == facts['limit']['bytes']
    assert value(families, 'opsguard_memory_available_bytes') == facts['limit']['available_bytes']
    assert value(families, 'opsguard_memory_available_ratio') == pytest.approx(facts['limit']['available_percent'] / 100, abs=0.001)
    assert [value(families, 'opsguard_memory_verdict', state=s) for s in ('ok', 'warning', 'critical')] == [0, 0, 1]
    assert value(families, 'opsguard_pressure_full_avg10') == facts['pressure']['full']['avg10']
    assert value(families, 'opsguard_oom_kills_total') == 1  # the limiting cgroup's counter, not the host's 3
    assert families['opsguard_oom_kills_total']['type'] == 'counter'
    shop = {'service': 'anqicms:/opt/a'}
    assert value(families, 'opsguard_service_memory_bytes', kind='anqicms', unit='anqicms-a.service', **shop) == 245 * MIB
    assert value(families, 'opsguard_service_limit_bytes', unit='anqicms-a.service', **shop) == 256 * MIB
    assert value(families, 'opsguard_service_limit_ratio', **shop) == pytest.approx(250 / 256, abs=1e-5)
    assert value(families, 'opsguard_service_memory_events_total', event='oom_kill', **shop) == 1
    assert value(families, 'opsguard_service_memory_events_total', event='max', **shop) == 0  # v1 failcnt
    assert value(families, 'opsguard_service_growth_bytes_per_second', **shop) == 1048576
    assert value(families, 'opsguard_service_seconds_to_limit', **shop) == 5.5
    assert value(families, 'opsguard_service_memory_bytes', service='mariadb') == 80 * MIB
    # mariadb has no own limit, no trend: those series are absent rather than 0
    assert value(families, 'opsguard_service_limit_bytes', service='mariadb') is None
    assert value(families, 'opsguard_service_seconds_to_limit', service='mariadb') is None
    # an unnamed process without its own limit is not a series (process names are an unbounded label set)
    assert value(families, 'opsguard_service_memory_bytes', service='bash') is None
    assert value(families, 'opsguard_collector_duration_seconds') == 0.0123
    assert value(families, 'opsguard_collector_last_success_timestamp_seconds') == NOW
    for name, family in families.items():
        assert family['help'] and family['type'] == metrics.FAMILIES[name][0], name
        assert 'host' not in {k for labels, _v in family['samples'] for k in labels}, name


def test_families_without_data_are_left_out_and_empty_facts_render_nothing() -> None:
    assert metrics.render({}) == ''
    families = parse(metrics.render({'limit': {'bytes': 100, 'source': 'meminfo', 'available_bytes': 50}, 'verdict': 'ok'}))
    assert 'opsguard_pressure_full_avg10' not in families and 'opsguard_oom_kills_total' not in families
    assert value(families, 'opsguard_memory_verdict', state='ok') == 1


def test_duplicate_service_names_give_one_series_each() -> None:
    facts = _facts([_service('nginx', 30 * MIB, kind='nginx'), _service('nginx', 20 * MIB, kind='nginx')])
    families = parse(metrics.render(facts))
    assert len(families['opsguard_service_memory_bytes']['samples']) == 1


@pytest.mark.parametrize('number, text', [(5, '5'), (2 ** 63, str(2 ** 63)), (0.25, '0.25'), (3.0, '3'), (float('nan'), 'NaN'),
                                          (float('inf'), '+Inf'), (float('-inf'), '-Inf'), (1e300, '1e+300'), (True, '1')])
def test_values_are_spelled_as_the_format_wants(number: float, text: str) -> None:
    assert metrics.format_value(number) == text


HOSTILE = st.one_of(st.text(max_size=60), st.sampled_from(['\\', '"', '\n', '\\n', '"}', '} 1\nfake_metric 1', '\ud800x',
                                                           '\x00', 'a\\"b', '\\\\"', '\r\n#', '\u2028']))


@settings(max_examples=200, deadline=None)
@given(name=HOSTILE, unit=HOSTILE, kind=HOSTILE)
def test_hostile_label_values_round_trip_and_never_inject_series(name: str, unit: str, kind: str) -> None:
    facts = _facts([_service(name, 123 * MIB, kind='other' if not kind else kind, limit=256 * MIB, used=100 * MIB, unit=unit)])
    text = metrics.render(facts, {name: {'rate': 1.5, 'seconds_to_limit': 2.0}})
    text.encode('utf-8')  # always valid UTF-8, whatever the process names held
    families = parse(text)
    assert set(families) <= set(metrics.FAMILIES)
    expected = metrics.clean_label(name)
    assert '\r' not in expected and '\x00' not in expected and not any('\ud800' <= c <= '\udfff' for c in expected)
    assert len(expected) == len(name) and all(a == b or (b == '\ufffd' and a != '\n') for a, b in zip(name, expected))
    samples = families['opsguard_service_memory_bytes']['samples']
    assert len(samples) == 1
    labels, number = samples[0]
    assert labels['service'] == expected and number == 123 * MIB
    assert labels['unit'] == metrics.clean_label(unit)
    assert value(families, 'opsguard_service_limit_ratio', service=expected) == pytest.approx(100 / 256, abs=1e-5)
    total = sum(len(f['samples']) for f in families.values())
    assert total == sum(1 for line in text.split('\n') if line and not line.startswith('#'))
    assert len(text.splitlines()) == len(text.split('\n')) - 1  # no parser splits a sample in two


def test_the_parser_used_here_refuses_what_the_collector_refuses() -> None:
    good = '# HELP a x\n# TYPE a gauge\na{l="v"} 1\n'
    assert parse(good)['a']['samples'] == [({'l': 'v'}, 1.0)]
    for bad in ['a 1\n', good + 'a{l="v"} 2\n', '# HELP a x\n# TYPE a gauge\na{l="v\\x"} 1\n', good[:-1],
                '# HELP a x\n# TYPE a gauge\na{l="v} 1\n', '# HELP a x\n# TYPE a gauge\na one\n',
                good + '# HELP b y\n# TYPE b gauge\nb 1\n# HELP a x\n']:
        with pytest.raises(ExpositionError):
            parse(bad)


# ---------------------------------------------------------------- trend state


# Bytes that are no text at all (a UTF-16 byte order mark, then garbage): made here, as the tree holds text files only.
BINARY_STATE = 'binary'


def _fixture(name: str) -> bytes:
    if name == BINARY_STATE:
        return b'\xff\xfe garbage\x00\x81'
    with open(os.path.join(FIXTURES, name), 'rb') as handle:
        return handle.read()


def test_a_saved_state_gives_growth_and_eta_in_one_pass() -> None:
    previous, problem = metrics.parse_state(_fixture('state_valid.json'))
    assert problem is None and set(previous) == {'anqicms:/srv/shop', 'mariadb'}
    # 10 s later the shop grew by 40 MiB (4 MiB/s), mariadb stayed; the shop's own limit is 512 MiB, 300 MiB used
    facts = _facts([_service('anqicms:/srv/shop', 240 * MIB, limit=512 * MIB, used=300 * MIB),
                    _service('mariadb', 90 * MIB, kind='database', unit='mariadb.service')])
    state, growth = metrics.advance_trend(previous, facts, previous['mariadb']['t'] + 10, 4 * MIB / 60)
    shop = growth['anqicms:/srv/shop']
    # first rate after a history of 0: EWMA with tau 60 s moves 1 - e^(-10/60) = 15.4 % of the way to 4 MiB/s
    assert shop['rate'] == pytest.approx(4 * MIB * (1 - math.exp(-10 / 60)), rel=1e-6)
    assert shop['growing'] is True
    assert shop['seconds_to_limit'] == pytest.approx(212 * MIB / shop['rate'], abs=0.1)
    assert growth['mariadb']['rate'] == 0 and growth['mariadb']['growing'] is False and growth['mariadb']['seconds_to_limit'] is None
    assert state['anqicms:/srv/shop']['bytes'] == 240 * MIB and state['anqicms:/srv/shop']['t'] == previous['mariadb']['t'] + 10
    again, problem = metrics.parse_state(metrics.dump_state(state).encode())
    assert problem is None and again == state


def test_a_steady_leak_is_followed_and_a_spike_that_clears_is_not_growing() -> None:
    leak, spike = {}, {}
    floor = 4 * MIB / 60
    for step in range(30):  # 5 minutes at 10 s
        now = NOW + 10 * step
        _state, g_leak = metrics.advance_trend(leak, _facts([_service('leak', (100 + 3 * step) * MIB)]), now, floor)
        leak = _state
        size = 500 if step == 10 else 100  # one sample 400 MiB up, then back
        spike, g_spike = metrics.advance_trend(spike, _facts([_service('spike', size * MIB)]), now, floor)
    assert g_leak['leak']['rate'] == pytest.approx(3 * MIB / 10, rel=0.02) and g_leak['leak']['growing']
    assert g_spike['spike']['growing'] is False and g_spike['spike']['seconds_to_limit'] is None


def _first_eta_under(rate_mib: float, every: float, threshold: float = 120.0, limit_mib: int = 1280,
                     spike_mib: int = 0) -> float | None:
    """Seconds after a leak (or a held spike) starts on a long-steady service until seconds_to_limit < threshold."""
    state: dict[str, dict[str, float]] = {}
    base = 300 * MIB
    for step in range(int(300 / every)):  # five steady minutes: the average settles at 0
        state, _growth = metrics.advance_trend(state, _facts([_service('shop', base, limit=limit_mib * MIB, used=base)]),
                                               NOW + step * every, 4 * MIB / 60)
    start = NOW + 300
    for step in range(1, int(240 / every)):
        size = base + int(rate_mib * MIB * step * every) + spike_mib * MIB
        if size >= limit_mib * MIB:
            return None
        state, growth = metrics.advance_trend(state, _facts([_service('shop', size, limit=limit_mib * MIB, used=size)]),
                                              start + step * every, 4 * MIB / 60)
        eta = growth['shop']['seconds_to_limit']
        if eta is not None and eta < threshold:
            return step * every
    return None


# (leak MiB/s, seconds between passes, first ETA under 2 minutes at most this long after the leak started with the
# growth run, at least this long with the 60 s average alone). 16 MiB/s into a 1280 MiB MemoryMax from 300 MiB: the
# kernel acts after about 61 s.
FAST_LEAKS = [(16, 5.0, 20, 25), (8, 5.0, 25, 50), (8, 10.0, 40, 60)]


@pytest.mark.parametrize('rate, every, within, alone', FAST_LEAKS)
def test_a_fast_leak_is_known_from_its_unbroken_growth_not_a_minute_later(rate: int, every: float, within: float,
                                                                          alone: float) -> None:
    found = _first_eta_under(rate, every)
    assert found is not None and found <= within
    assert _first_eta_under(4, every) <= 140  # a slower leak: ETA under 2 minutes with about 3 minutes left


@pytest.mark.parametrize('rate, every, within, alone', FAST_LEAKS)
def test_without_the_growth_run_a_fast_leak_is_known_late(monkeypatch: pytest.MonkeyPatch, rate: int, every: float,
                                                          within: float, alone: float) -> None:
    monkeypatch.setattr(metrics, 'TREND_RUN_PASSES', 10 ** 6)
    assert _first_eta_under(rate, every) >= alone


@pytest.mark.parametrize('every', [5.0, 10.0])
def test_a_held_spike_is_not_a_run(every: float) -> None:
    # 200 MiB at once (a cache filled), then flat: one growing pass, never a run; its ETA stays above 2 minutes
    assert _first_eta_under(0, every, spike_mib=200) is None


def test_a_sawtooth_breaks_the_run_and_the_run_survives_a_saved_state() -> None:
    state: dict[str, dict[str, float]] = {}
    sizes = [300, 330, 360, 390, 300, 330, 360, 390, 300]  # a GC sawtooth: 3 rises of 30 MiB, then back down
    for step, mib in enumerate(sizes):
        state, growth = metrics.advance_trend(state, _facts([_service('shop', mib * MIB, limit=1280 * MIB, used=mib * MIB)]),
                                              NOW + 5 * step, 4 * MIB / 60)
        if mib == 300 and step:
            assert 'run_t' not in state['shop']
    assert growth['shop']['seconds_to_limit'] is None  # the drops undo the rises: not growing
    for step in range(1, 6):
        state, growth = metrics.advance_trend(state, _facts([_service('shop', (300 + 40 * step) * MIB, limit=1280 * MIB,
                                                                      used=(300 + 40 * step) * MIB)]),
                                              NOW + 40 + 5 * step, 4 * MIB / 60)
        state, problem = metrics.parse_state(metrics.dump_state(state).encode())  # each pass is a new process
        assert problem is None
    assert state['shop']['run_n'] == 5 and state['shop']['run_bytes'] == 300 * MIB
    assert growth['shop']['rate'] == pytest.approx(8 * MIB, rel=1e-3)  # 200 MiB in 25 s


@pytest.mark.parametrize('entry', [
    {'t': NOW, 'bytes': 10, 'rate': 0, 'run_t': NOW + 1, 'run_bytes': 5, 'run_n': 2},   # a run that starts later
    {'t': NOW, 'bytes': 10, 'rate': 0, 'run_t': NOW, 'run_bytes': 11, 'run_n': 2},      # more bytes at its start
    {'t': NOW, 'bytes': 10, 'rate': 0, 'run_t': NOW, 'run_bytes': 5, 'run_n': 0},
    {'t': NOW, 'bytes': 10, 'rate': 0, 'run_t': NOW, 'run_bytes': 5, 'run_n': True},
    {'t': NOW, 'bytes': 10, 'rate': 0, 'run_t': float('nan'), 'run_bytes': 5, 'run_n': 1},
    {'t': NOW, 'bytes': 10, 'rate': 0, 'run_t': NOW},                                     # part of a run
])
def test_a_saved_run_that_cannot_be_is_refused(entry: dict[str, t.Any]) -> None:
    samples, problem = metrics.parse_state(json.dumps({'version': 1, 'services': {'a': entry}}).encode())
    assert samples == {} and problem


def test_a_restart_a_long_gap_or_a_clock_going_back_start_afresh() -> None:
    previous = {'shop': {'t': NOW, 'bytes': 400 * MIB, 'rate': 50000.0}}
    for now, size in ((NOW + 10, 150 * MIB), (NOW + 5000, 420 * MIB), (NOW - 60, 420 * MIB)):
        state, growth = metrics.advance_trend(previous, _facts([_service('shop', size)]), now, 1.0)
        assert growth['shop']['rate'] is None and growth['shop']['seconds_to_limit'] is None
        assert state['shop'] == {'t': now, 'bytes': size, 'rate': 0.0}


@pytest.mark.parametrize('name, problem', [
    ('state_truncated.json', 'is not JSON'),
    ('state_other_version.json', 'not an opsguard trend state of version 1'),
    ('state_bad_numbers.json', 'invalid number'),
    ('state_extra_key.json', 'unexpected shape'),
    (BINARY_STATE, 'is not JSON'),
])
def test_an_invalid_saved_state_is_ignored_with_a_note_and_replaced(tmp_path: t.Any, name: str, problem: str) -> None:
    samples, why = metrics.parse_state(_fixture(name))
    assert samples == {} and problem in why
    path = tmp_path / 'opsguard.state.json'
    path.write_bytes(_fixture(name))
    textfile = str(tmp_path / 'opsguard.prom')
    facts = metrics.collect(lambda: _facts([_service('shop', 100 * MIB)]), textfile, str(path), clock=lambda: NOW)
    assert any(problem in note and str(path) in note for note in facts['notes']), facts['notes']
    assert json.loads(path.read_text())['services']['shop'] == {'t': NOW, 'bytes': 100 * MIB, 'rate': 0.0}


def test_a_huge_deep_or_odd_state_never_crashes(tmp_path: t.Any) -> None:
    assert metrics.parse_state(b' ' * (metrics.STATE_MAX_BYTES + 1))[1].startswith('is larger than')
    assert metrics.parse_state(b'[' * 100000)[0] == {}
    many = {'version': 1, 'services': {str(i): {'t': NOW, 'bytes': 1, 'rate': 0} for i in range(metrics.STATE_MAX_SERVICES + 1)}}
    assert 'more than' in metrics.parse_state(json.dumps(many).encode())[1]
    for entry in ({'t': float('inf'), 'bytes': 1}, {'t': NOW, 'bytes': True}, {'t': NOW, 'bytes': 1, 'rate': 1e300}, 'x', None):
        assert metrics.parse_state(json.dumps({'version': 1, 'services': {'a': entry}}).encode())[0] == {}
    notes: list[str] = []
    os.mkfifo(str(tmp_path / 'fifo'))
    assert metrics.load_state(str(tmp_path / 'fifo'), notes) == {} and 'not a regular file' in notes[0]
    os.symlink('/etc/passwd', str(tmp_path / 'link'))
    assert metrics.load_state(str(tmp_path / 'link'), notes) == {} and 'cannot be read' in notes[1]
    assert metrics.load_state(str(tmp_path / 'absent'), notes) == {} and len(notes) == 2


JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=5))
JSON_KEYS = st.sampled_from(['version', 'services', 't', 'bytes', 'rate', 'run_t', 'run_bytes', 'run_n', 'x'])
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(JSON_KEYS, inner, max_size=4)),
                           max_leaves=12)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(st.binary(max_size=300), JSON_VALUES.map(lambda v: json.dumps(v).encode())))
def test_any_state_bytes_give_samples_of_the_schema_or_nothing(raw: bytes) -> None:
    samples, problem = metrics.parse_state(raw)
    assert (samples == {}) or problem is None
    for entry in samples.values():
        assert set(entry) in ({'t', 'bytes', 'rate'}, {'t', 'bytes', 'rate', 'run_t', 'run_bytes', 'run_n'})
        assert math.isfinite(entry['t']) and entry['bytes'] >= 0
        if 'run_t' in entry:
            assert 0 < entry['run_t'] <= entry['t'] and 0 <= entry['run_bytes'] <= entry['bytes'] and entry['run_n'] >= 1


# ---------------------------------------------------------------- files and options


def test_collect_writes_both_files_atomically_with_mode_0644(tmp_path: t.Any) -> None:
    textfile = str(tmp_path / 'opsguard.prom')
    os.umask(0o077)
    try:
        facts = metrics.collect(lambda: _facts([_service('shop', 100 * MIB)]), textfile, clock=lambda: NOW)
    finally:
        os.umask(0o022)
    assert stat.S_IMODE(os.stat(textfile).st_mode) == 0o644
    assert sorted(os.listdir(str(tmp_path))) == ['opsguard.prom', 'opsguard.state.json']  # no temporary file left
    families = parse(open(textfile, encoding='utf-8').read())
    assert facts['textfile'] == {'path': textfile, 'state_file': str(tmp_path / 'opsguard.state.json'), 'written': True,
                                 'series': sum(len(f['samples']) for f in families.values()),
                                 'bytes': os.path.getsize(textfile)}
    assert facts['services'][0]['growth_bytes_per_second'] is None  # first pass: no previous sample


def test_check_mode_writes_nothing(tmp_path: t.Any) -> None:
    facts = metrics.collect(lambda: _facts([_service('shop', 100 * MIB)]), str(tmp_path / 'm.prom'), write=False)
    assert os.listdir(str(tmp_path)) == [] and facts['textfile']['written'] is False and facts['textfile']['series'] > 0


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: t.Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / 'm.prom'
    path.write_text('old\n')

    def broken(_fd: int) -> None:
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', broken)
    with pytest.raises(OSError):
        metrics.write_atomic(str(path), 'new\n')
    assert path.read_text() == 'old\n' and os.listdir(str(tmp_path)) == ['m.prom']


@pytest.mark.parametrize('textfile, state_file, expected', [
    ('relative.prom', None, 'textfile=relative.prom: give an absolute path'),
    ('/tmp/x.txt', None, 'the file name must end in .prom'),
    ('/no/such/dir/x.prom', None, 'directory /no/such/dir does not exist'),
    ('/tmp/a\x00.prom', None, 'without NUL'),
    ('/tmp/a\n.prom', None, 'without NUL or newline'),
    ('/tmp/x.prom', '/tmp/x.prom', 'must not end in .prom'),
    ('/tmp/x.prom', 'state.json', 'state_file=state.json: give an absolute path'),
    ('/tmp/x.prom', '/tmp', 'state_file=/tmp is a directory'),
    (None, '/tmp/s.json', 'state_file=/tmp/s.json is used only with textfile'),
])
def test_bad_paths_are_refused_naming_the_option(textfile: str | None, state_file: str | None, expected: str) -> None:
    errors = metrics.check_paths(textfile, state_file)
    assert any(expected in e for e in errors), errors


def test_good_paths_pass_and_the_state_defaults_next_to_the_textfile(tmp_path: t.Any) -> None:
    assert metrics.check_paths(str(tmp_path / 'opsguard.prom'), str(tmp_path / 's.json')) == []
    assert metrics.default_state_file('/var/lib/ne/opsguard.prom') == '/var/lib/ne/opsguard.state.json'


def test_rendering_does_not_change_the_facts(tmp_path: t.Any) -> None:
    facts = _v1_facts(tmp_path)
    before = copy.deepcopy(facts)
    metrics.render(facts, {})
    assert facts == before
