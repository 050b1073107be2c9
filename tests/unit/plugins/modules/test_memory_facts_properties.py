# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property-based tests of memory_facts (issue 11): any value of an option's declared type is either refused with a
message that names the option, or leads to a result; kernel files full of garbage never crash the module nor yield a
share of a limit above 100 %, and the culprit is always a service charged to the limit."""

from __future__ import annotations

import atexit
import functools
import math
import os
import shutil
import tempfile
import typing as t
from unittest import mock

from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.opsguard.anqicms.plugins.module_utils import cgroups, memory, procfs, services
from ansible_collections.opsguard.anqicms.plugins.modules import memory_facts
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.memory_helpers import SavedProcess, write_process

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'memory')
MIB = 1024 * 1024
FAST = {'detailed': False, 'kernel_messages': False, 'top': 3}
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, -1e308, 2.0 ** 64, -0.0, 0.0]),
                   st.floats(min_value=-10, max_value=200))
INTS = st.one_of(st.integers(), st.sampled_from([2 ** 64, 2 ** 63, -(2 ** 63), 0, -1]), st.integers(min_value=-5, max_value=100))
HOSTILE_TEXT = ['', '\x00', '../../../../proc', '/' + 'a' * 5000, '/..', '//', '/.', '/sys/../..', '(', '[', 'a{4294967296}']
TEXT = st.one_of(st.text(max_size=80), st.sampled_from(HOSTILE_TEXT))

PERCENT_OPTIONS = ['available_warning', 'available_critical', 'service_limit_warning', 'service_limit_critical',
                   'psi_warning', 'psi_critical', 'swap_warning', 'swap_critical']


def _rows(rss: int = 100 * MIB) -> list[SavedProcess]:
    """A small saved process table: the properties are about options, not about this machine's processes."""
    return [SavedProcess(101, 1, 'anqicms', '/srv/site1/anqicms', rss), SavedProcess(202, 1, 'anqicms', '/srv/site2/anqicms', 400 * MIB)]


def _table(proc: str = '/proc', cmdline: bool = True, exclude: tuple = ()) -> list[dict[str, t.Any]]:
    """procfs.process_rows of this host replaced by the saved table (no cgroup known: /proc/101 is not theirs)."""
    del proc, exclude
    return [{'pid': r.pid, 'ppid': r.ppid, 'name': r.name, 'exe': r.exe, 'cmdline': ' '.join(r.cmdline) if cmdline else '',
             'rss': r.rss, 'cgroups': {}} for r in _rows()]


def _fast_module() -> t.Any:
    """The module with a saved process table, and a gather that does not really sleep (sample_seconds may be an hour)."""
    stack = mock.patch.object(procfs, 'process_rows', _table)
    gather = mock.patch.object(memory, 'gather', functools.partial(memory.gather, sleep=lambda _s: None))

    class _Both:
        def __enter__(self) -> None:
            stack.__enter__()
            gather.__enter__()

        def __exit__(self, *exc: t.Any) -> None:
            gather.__exit__(*exc)
            stack.__exit__(*exc)
    return _Both()


def _judge(option: str, value: t.Any, result: dict[str, t.Any]) -> None:
    if result.get('failed'):
        assert option in result['msg'] or 'matcher' in result['msg'], result['msg']
        assert 'Traceback' not in result['msg']
    else:
        facts = result['ansible_facts']['opsguard_memory']
        assert facts['verdict'] in ('ok', 'warning', 'critical'), (option, value)
        _check_shares(facts)


def _check_shares(facts: dict[str, t.Any]) -> None:
    for service in facts['services']:
        assert service['in_limit'] is True
        assert service['share_of_limit'] is None or 0 <= service['share_of_limit'] <= 100
        own = service.get('cgroup') or {}
        assert own.get('share') is None or 0 <= own['share'] <= 100
    for service in facts['outside_limit']:
        assert service['in_limit'] is False and service['share_of_limit'] is None
    assert 0 <= facts['limit']['available_percent'] <= 100
    if facts['culprit'] is not None:
        assert facts['culprit']['name'] in {s['name'] for s in facts['services']}


@SETTINGS
@given(option=st.sampled_from(PERCENT_OPTIONS + ['leak_mib_per_minute', 'sample_seconds']), value=FLOATS)
def test_float_options_are_refused_or_answered(run_main: t.Any, option: str, value: float) -> None:
    if option == 'sample_seconds' and 0 < value <= 3600:
        args = dict(FAST, sample_seconds=value, samples=3)
    else:
        args = dict(FAST, **{option: value})
    with _fast_module():
        result = run_main(memory_facts.main, args)
    _judge(option, value, result)
    if not math.isfinite(value):
        assert result.get('failed') is True, (option, value)


@SETTINGS
@given(option=st.sampled_from(['oom_window', 'samples', 'top']), value=INTS)
def test_int_options_are_refused_or_answered(run_main: t.Any, option: str, value: int) -> None:
    with _fast_module():
        result = run_main(memory_facts.main, dict(FAST, **{option: value}))
    _judge(option, value, result)
    if value < 0:
        assert result.get('failed') is True


@SETTINGS
@given(value=TEXT)
def test_the_cgroup_option_is_refused_or_stays_in_the_hierarchy(run_main: t.Any, value: str) -> None:
    with _fast_module():
        result = run_main(memory_facts.main, dict(FAST, cgroup=value))
    _judge('cgroup', value, result)
    if '..' in value.split('/') or not value.strip() or '\x00' in value:
        assert result.get('failed') is True, value
    if not result.get('failed'):
        assert result['ansible_facts']['opsguard_memory']['counted_cgroup'] == cgroups.normalise_cgroup(value)


MATCHER = st.fixed_dictionaries({'name': TEXT}, optional={
    'kind': st.sampled_from(list(services.KINDS)),
    'exe': st.lists(TEXT, max_size=3), 'process_name': st.lists(TEXT, max_size=3), 'unit': st.lists(TEXT, max_size=3),
    'cmdline': TEXT, 'per_executable': st.booleans()})


@SETTINGS
@given(matchers=st.lists(MATCHER, max_size=3), defaults=st.booleans())
def test_matchers_are_refused_or_answered(run_main: t.Any, matchers: list[dict[str, t.Any]], defaults: bool) -> None:
    with _fast_module():
        result = run_main(memory_facts.main, dict(FAST, matchers=matchers, default_matchers=defaults))
    _judge('matchers', matchers, result)


@settings(max_examples=100, deadline=None)
@given(part=st.one_of(st.integers(), FLOATS, st.none()), whole=st.one_of(st.integers(), FLOATS, st.none()))
def test_a_share_is_always_within_0_and_100(part: t.Any, whole: t.Any) -> None:
    share = cgroups.percent_of(part, whole)
    assert share is None or 0.0 <= share <= 100.0


# Garbage in kernel files: numbers of every size and sign, NaN text, binary noise.
GARBAGE = st.one_of(st.text(max_size=60), st.integers().map(str), st.sampled_from(['nan', 'NaN', '-inf', 'max', '-1', '',
                                                                                   '9' * 400, '\x00\xff', '1.2.3']))


def _garbage_tree() -> str:
    case = tempfile.mkdtemp(prefix='opsguard-mf-')
    atexit.register(shutil.rmtree, case, True)
    shutil.copytree(os.path.join(FIXTURES, 'v2_sibling_outside'), os.path.join(case, 'tree'))
    return os.path.join(case, 'tree')


GARBAGE_TREE = _garbage_tree()
GARBAGE_FILES = ['sys/fs/cgroup/site1.slice/memory.max', 'sys/fs/cgroup/site1.slice/memory.current',
                 'sys/fs/cgroup/site1.slice/memory.stat', 'sys/fs/cgroup/site1.slice/memory.swap.max',
                 'sys/fs/cgroup/site1.slice/memory.swap.current', 'sys/fs/cgroup/site1.slice/memory.pressure',
                 'sys/fs/cgroup/site1.slice/anqicms-site1.service/memory.max', 'proc/meminfo', 'proc/self/cgroup',
                 'proc/101/cgroup', 'proc/202/cgroup', 'proc/vmstat', 'proc/stat']


@settings(max_examples=60, deadline=None)
@given(files=st.dictionaries(st.sampled_from(GARBAGE_FILES), GARBAGE, min_size=1, max_size=4),
       rss=st.integers(min_value=0, max_value=2 ** 62))
def test_garbage_kernel_files_never_crash_nor_exceed_100_percent(files: dict[str, str], rss: int) -> None:
    saved = {}
    try:
        for rel, text in files.items():
            path = os.path.join(GARBAGE_TREE, rel)
            with open(path, 'r', encoding='utf-8', errors='replace') as handle:
                saved[path] = handle.read()
            with open(path, 'w', encoding='utf-8', errors='surrogatepass') as handle:
                handle.write(text)
        for row in _rows(rss):
            write_process(os.path.join(GARBAGE_TREE, 'proc'), row)
        try:
            facts = memory.gather(dict(memory.DEFAULT_THRESHOLDS), GARBAGE_TREE, kernel_messages=True)
        except ValueError as exc:
            assert 'MemTotal' in str(exc)  # the only refusal: a /proc/meminfo this module cannot read
            return
        _check_shares(facts)
        assert facts['culprit'] is None or facts['culprit']['name'] != 'anqicms:/srv/site2' or facts['counted_cgroup'] is None
    finally:
        for path, text in saved.items():
            with open(path, 'w', encoding='utf-8') as handle:
                handle.write(text)
