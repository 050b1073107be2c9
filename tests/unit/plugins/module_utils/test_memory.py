# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The memory verdict and report (plugins/module_utils/memory.py) over saved /proc and /sys/fs/cgroup trees
(tests/unit/fixtures/memory/<case>) with saved process tables written into them."""

from __future__ import annotations

import os
import time
import typing as t

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils import cgroups, memory, procfs
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.memory_helpers import (
    BTIME,
    KIB,
    MIB,
    SavedProcess,
    root,
    saved,
    thresholds,
)


def test_system_from_meminfo_matches_free_formulas() -> None:
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(root('v1_container'), notes))
    assert notes == []
    assert system['total'] == 24684084 * KIB
    assert system['available'] == 23001216 * KIB
    assert system['used'] == (24684084 - 23001216) * KIB
    assert system['cached'] == (2715328 + 180224) * KIB
    assert system['swap_total'] == 2097148 * KIB
    assert system['swap_used'] == (2097148 - 1048572) * KIB
    assert system['percent'] == pytest.approx(6.8, abs=0.05)


def test_meminfo_without_memavailable_falls_back_to_free_buffers_cached() -> None:
    system = memory.system_memory(memory.read_meminfo(root('old_kernel'), []))
    assert system['available'] == (100000 + 50000 + 150000) * KIB
    assert system['swap_total'] == 0 and system['swap_used'] == 0


def test_parse_keyed_ignores_garbage_lines() -> None:
    parsed = procfs.parse_keyed('MemTotal: 10 kB\nnonsense\nKey: notanumber kB\noom_kill 4\n', scale_kb=True)
    assert parsed == {'MemTotal': 10 * KIB, 'oom_kill': 4}


def test_gather_refuses_a_proc_without_memtotal(tmp_path: t.Any) -> None:
    with pytest.raises(ValueError, match='no MemTotal'):
        memory.gather(thresholds(), saved([], root('garbage'), tmp_path))


def _v1_table() -> list[SavedProcess]:
    return [
        SavedProcess(4242, 1, 'anqicms', '/opt/a/anqicms', 245 * MIB),
        SavedProcess(777, 1, 'mariadbd', '/usr/sbin/mariadbd', 80 * MIB),
        SavedProcess(900, 1, 'anqicms', '/opt/b/anqicms', 60 * MIB),
    ]


def test_gather_v1_container_service_at_its_own_limit_is_critical(tmp_path: t.Any) -> None:
    facts = memory.gather(thresholds(), saved(_v1_table(), root('v1_container'), tmp_path), kernel_messages=False)
    assert facts['verdict'] == 'critical'
    assert facts['limit']['source'] == 'cgroup v1'
    assert facts['culprit']['name'] == 'anqicms:/opt/a'
    assert facts['culprit']['pids'] == [4242]
    assert any('anqicms:/opt/a uses 250 MiB of its own 256 MiB limit (97.7 %' in r for r in facts['reasons'])
    assert any('52 MiB (10.2 %)' in r and 'critical below 15' in r for r in facts['reasons'])
    # machine-wide PSI (55 % full) is reported but must not drive the verdict of a v1 container
    assert not any('PSI' in r for r in facts['reasons'])
    services = {s['name']: s for s in facts['services']}
    assert services['anqicms:/opt/a']['uss_bytes'] == 237000 * KIB
    assert services['anqicms:/opt/a']['swap_bytes'] == 512 * KIB
    assert services['anqicms:/opt/b']['uss_bytes'] is None


def test_gather_v2_pressure_is_critical_and_names_the_largest(tmp_path: t.Any) -> None:
    table = [SavedProcess(5, 1, 'mariadbd', '/usr/sbin/mariadbd', 700 * MIB),
             SavedProcess(6, 1, 'nginx', '/usr/sbin/nginx', 10 * MIB)]
    facts = memory.gather(thresholds(), saved(table, root('v2_pressure'), tmp_path))
    assert facts['verdict'] == 'critical'
    assert any('PSI full avg10' in r and '45.0 %' in r for r in facts['reasons'])
    assert facts['culprit']['kind'] == 'database'


def test_gather_v2_container_is_ok(tmp_path: t.Any) -> None:
    table = [SavedProcess(100, 1, 'anqicms', '/opt/a/anqicms', 100 * MIB)]
    facts = memory.gather(thresholds(), saved(table, root('v2_container'), tmp_path))
    assert facts['verdict'] == 'ok', facts['reasons']
    assert facts['culprit'] is None
    assert facts['reasons'][0].startswith('524 MiB (51.2 %) of the cgroup v2 limit of / (1024 MiB) is available')


def test_gather_bare_machine_low_memory_is_critical(tmp_path: t.Any) -> None:
    table = [SavedProcess(100, 1, 'anqicms', '/opt/a/anqicms', 100 * MIB)]
    facts = memory.gather(thresholds(), saved(table, root('bare_no_psi'), tmp_path))
    assert facts['verdict'] == 'critical'
    assert facts['pressure'] is None and 'psi=1' in facts['pressure_note']
    assert facts['limit']['source'] == 'meminfo'
    assert any('the machine\'s RAM' in r for r in facts['reasons'])


def test_gather_swap_thresholds_use_the_cgroup_swap(tmp_path: t.Any) -> None:
    table = []
    facts = memory.gather(thresholds(swap_warning=20.0, swap_critical=30.0), saved(table, root('v2_container'), tmp_path))
    assert facts['verdict'] == 'warning'
    assert any(r.startswith('Swap is 25.0 % used (64 MiB of 256 MiB)') for r in facts['reasons'])


def test_gather_with_sampling_uses_the_given_sleep(tmp_path: t.Any) -> None:
    slept: list[float] = []
    facts = memory.gather(thresholds(), saved(_v1_table(), root('v1_container'), tmp_path), sample_seconds=3, samples=4,
                          kernel_messages=False, sleep=slept.append)
    assert slept == [1.0, 1.0, 1.0]
    assert facts['trend']['samples'] == 4
    assert facts['trend']['leak_suspected'] is False  # the saved table does not change between samples


@pytest.mark.parametrize('over, message', [
    ({'available_critical': 30.0}, 'available_critical=30.0 must be below available_warning=25.0'),
    ({'service_limit_critical': 80.0}, 'service_limit_critical=80.0 must be above service_limit_warning=85.0'),
    ({'psi_warning': 50.0}, 'psi_critical=40.0 must be above psi_warning=50.0'),
    ({'swap_warning': 120.0, 'swap_critical': 130.0}, 'swap_warning=120.0 is not a percentage'),
    ({'leak_mib_per_minute': 0.0}, 'leak_mib_per_minute=0.0 must be above 0'),
])
def test_contradictory_thresholds_are_reported(over: dict[str, float], message: str) -> None:
    errors = memory.check_thresholds(thresholds(**over))
    assert any(message in e for e in errors), errors


def test_defaults_are_consistent() -> None:
    assert memory.check_thresholds(thresholds()) == []


def test_only_kills_of_this_scope_make_a_warning() -> None:
    memcg = {'victim': 'anqicms', 'pid': 1, 'time': 't', 'constraint': 'CONSTRAINT_MEMCG'}
    global_kill = {'victim': 'mariadbd', 'pid': 2, 'time': 't', 'constraint': 'CONSTRAINT_NONE'}
    machine = {'source': 'meminfo'}
    container = {'source': 'cgroup v1'}
    assert memory.relevant_kills({'recent': [memcg, global_kill]}, machine) == [global_kill]
    assert memory.relevant_kills({'recent': [memcg, global_kill], 'cgroup_oom_kills': 0}, container) == []
    assert memory.relevant_kills({'recent': [memcg, global_kill], 'cgroup_oom_kills': 2}, container) == [memcg]


def test_a_recent_oom_kill_on_the_machine_is_a_warning_with_the_victim() -> None:
    case = root('v1_container')
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(case, notes))
    limit = {'source': 'meminfo', 'bytes': system['total'], 'available_bytes': system['available'], 'available_percent': 93.2,
             'cgroup_path': None, 'events': None}
    oom = cgroups.oom_section(case, {'oom_kill': 3}, limit, notes, now=BTIME + 7200 + 60)
    level, reasons, _culprit = memory.verdict({'limit': limit, 'system': system, 'services': [], 'oom': oom}, thresholds())
    assert level == 'warning'
    assert reasons == ['The kernel OOM-killed 1 process(es) in the last 900 s: mariadbd (pid 777, %s).'
                       % time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(BTIME + 7200.0001))]


def test_unreadable_executables_are_a_note_with_the_fix(tmp_path: t.Any) -> None:
    table = [SavedProcess(100, 1, 'anqicms', '', 100 * MIB), SavedProcess(101, 1, 'anqicms', '', 90 * MIB)]
    facts = memory.gather(thresholds(), saved(table, root('v2_container'), tmp_path))
    assert [s['name'] for s in facts['services']] == ['anqicms']
    assert any('pids 100, 101' in n and 'become: true' in n for n in facts['notes'])


def _sibling_table(site1_mib: float = 205) -> list[SavedProcess]:
    """site1 inside the module's 256 MiB cgroup; bigger AnQiCMS instances outside it in every way a process can be."""
    return [
        SavedProcess(101, 1, 'anqicms', '/srv/site1/anqicms', int(site1_mib * MIB)),   # /site1.slice/...: inside
        SavedProcess(202, 1, 'anqicms', '/srv/site2/anqicms', 400 * MIB),              # /site2.slice: a sibling
        SavedProcess(303, 1, 'anqicms', '/srv/site3/anqicms', 600 * MIB),              # /../../other: above the namespace
        SavedProcess(404, 1, 'anqicms', '/srv/site4/anqicms', 700 * MIB),              # no /proc/404/cgroup: unknown
        SavedProcess(505, 1, 'anqicms', '/srv/site5/anqicms', 300 * MIB),              # /site1.slicex: a name prefix only
    ]


@pytest.mark.parametrize('case, source', [('v1_sibling_outside', 'cgroup v1'), ('v2_sibling_outside', 'cgroup v2')])
def test_the_culprit_is_never_outside_the_limiting_cgroup(case: str, source: str, tmp_path: t.Any) -> None:
    facts = memory.gather(thresholds(), saved(_sibling_table(), root(case), tmp_path), kernel_messages=False)
    assert facts['limit']['source'] == source
    assert facts['limit']['bytes'] == 256 * MIB and facts['limit']['cgroup_path'] == '/site1.slice'
    assert facts['counted_cgroup'] == '/site1.slice'
    assert facts['verdict'] == 'critical', facts['reasons']
    assert facts['culprit']['name'] == 'anqicms:/srv/site1'
    assert facts['culprit']['pids'] == [101]
    assert facts['culprit']['share_of_limit'] == pytest.approx(80.1, abs=0.05)
    assert [s['name'] for s in facts['services']] == ['anqicms:/srv/site1']
    assert [p['pid'] for p in facts['top']] == [101]
    assert facts['process_count'] == 1
    outside = {s['name']: s for s in facts['outside_limit']}
    assert set(outside) == {'anqicms:/srv/site%d' % n for n in (2, 3, 4, 5)}
    assert all(s['in_limit'] is False and s['share_of_limit'] is None and s['cgroup'] is None for s in outside.values())
    assert not any('site2' in r or 'site3' in r or 'site4' in r or 'site5' in r for r in facts['reasons'])
    assert any('Largest: anqicms:/srv/site1 with 205 MiB (80.1 %)' in r for r in facts['reasons'])
    assert any('outside cgroup /site1.slice' in n and 'never blamed' in n for n in facts['notes'])


@pytest.mark.parametrize('case', ['v1_sibling_outside', 'v2_sibling_outside'])
def test_a_share_of_the_limit_is_never_above_100_percent(case: str, tmp_path: t.Any) -> None:
    # RSS counts shared pages once per process, so the RSS of a cgroup's processes can exceed its limit
    facts = memory.gather(thresholds(), saved(_sibling_table(site1_mib=300), root(case), tmp_path), kernel_messages=False)
    assert facts['culprit']['name'] == 'anqicms:/srv/site1'
    assert facts['culprit']['share_of_limit'] == 100.0
    assert facts['services'][0]['share_of_limit'] == 100.0
    assert any('(100.0 %)' in r for r in facts['reasons'])


def test_with_a_machine_limit_every_process_counts(tmp_path: t.Any) -> None:
    table = [SavedProcess(100, 1, 'anqicms', '/opt/a/anqicms', 100 * MIB),
             SavedProcess(999, 1, 'anqicms', '/opt/z/anqicms', 50 * MIB)]  # no cgroup file
    facts = memory.gather(thresholds(), saved(table, root('bare_no_psi'), tmp_path))
    assert facts['counted_cgroup'] is None and facts['outside_limit'] == []
    assert [s['name'] for s in facts['services']] == ['anqicms:/opt/a', 'anqicms:/opt/z']
    assert all(s['in_limit'] is True for s in facts['services'])


def test_the_verdict_never_blames_a_service_marked_outside_the_limit() -> None:
    notes: list[str] = []
    system = memory.system_memory(memory.read_meminfo(root('v1_sibling_outside'), notes))
    limit, _cgroup = cgroups.effective_limit(root('v1_sibling_outside'), system, notes)
    outsider = {'name': 'anqicms:/srv/site2', 'kind': 'anqicms', 'rss_bytes': 400 * MIB, 'share_of_limit': None,
                'cgroup': None, 'in_limit': False, 'pids': [202]}
    level, reasons, culprit = memory.verdict({'limit': limit, 'system': system, 'services': [outsider]}, thresholds())
    assert level == 'critical' and culprit is None
    assert not any('site2' in r for r in reasons)


def test_garbage_cgroup_files_give_no_share_above_100(tmp_path: t.Any) -> None:
    import shutil  # pylint: disable=import-outside-toplevel
    case = str(tmp_path / 'case')
    shutil.copytree(root('v1_sibling_outside'), case)
    slice_dir = os.path.join(case, 'sys/fs/cgroup/memory/site1.slice')
    for name, text in (('memory.usage_in_bytes', '999999999999'), ('memory.stat', 'total_inactive_file -77\n'),
                       ('memory.memsw.limit_in_bytes', '1'), ('memory.memsw.usage_in_bytes', '5')):
        with open(os.path.join(slice_dir, name), 'w', encoding='ascii') as handle:
            handle.write(text)
    facts = memory.gather(thresholds(), saved(_sibling_table(), case, tmp_path), kernel_messages=False)
    assert facts['limit']['available_bytes'] == 0 and facts['limit']['available_percent'] == 0.0
    assert facts['limit']['swap_max_bytes'] == 0 and facts['limit']['swap_bytes'] == 0
    assert facts['culprit']['name'] == 'anqicms:/srv/site1'
    assert all(0 <= s['share_of_limit'] <= 100 for s in facts['services'])


@pytest.mark.parametrize('over, message', [
    ({'available_warning': float('nan')}, 'available_warning=nan is not a percentage'),
    ({'psi_critical': float('inf')}, 'psi_critical=inf is not a percentage'),
    ({'leak_mib_per_minute': float('nan')}, 'leak_mib_per_minute=nan must be above 0 and at most'),
    ({'leak_mib_per_minute': 1e308}, 'leak_mib_per_minute=1e+308 must be above 0 and at most'),
    ({'oom_window': float(2 ** 64)}, 'oom_window=1.8446744073709552e+19 must be between 0 and'),
    ({'oom_window': -1.0}, 'oom_window=-1.0 must be between 0 and'),
])
def test_non_finite_and_huge_thresholds_are_refused(over: dict[str, float], message: str) -> None:
    errors = memory.check_thresholds(thresholds(**over))
    assert any(message in e for e in errors), errors


@pytest.mark.parametrize('args, message', [
    ((float('nan'), 4, 10), 'sample_seconds=nan must be between 0 and 3600'),
    ((float('inf'), 4, 10), 'sample_seconds=inf must be between 0 and 3600'),
    ((-0.5, 4, 10), 'sample_seconds=-0.5'),
    ((0.0, 2 ** 64, 10), 'samples=18446744073709551616: use between 3'),
    ((0.0, -1, 10), 'samples=-1: use between 3'),
    ((0.0, 4, 2 ** 64), 'top=18446744073709551616 must be between 0 and 10000'),
    ((0.0, 4, -1), 'top=-1 must be between 0 and 10000'),
])
def test_sampling_and_listing_options_are_bounded(args: tuple[float, int, int], message: str) -> None:
    assert any(message in e for e in memory.check_options(*args))
    assert memory.check_options(0.0, 4, 10) == [] and memory.check_options(3600.0, 60, 10000) == []
