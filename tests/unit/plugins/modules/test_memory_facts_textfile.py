# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""memory_facts with textfile on this machine's real /proc: the metrics file parsed back, the trend state carried from
one run to the next, check mode writing nothing, bad paths refused before anything is written."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import typing as t

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.opsguard.anqicms.plugins.modules import memory_facts
from ansible_collections.opsguard.anqicms.tests.unit.plugins.module_utils.exposition_parser import parse, value

FAST = {'detailed': False, 'kernel_messages': False, 'top': 1}


def run(capsys: pytest.CaptureFixture[str], args: dict[str, t.Any]) -> dict[str, t.Any]:
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            memory_facts.main()
    return json.loads(capsys.readouterr().out)


def test_two_runs_write_metrics_and_carry_the_trend(capsys: pytest.CaptureFixture[str], tmp_path: t.Any) -> None:
    textfile = str(tmp_path / 'opsguard.prom')
    # a named service of this machine: a child matched by a custom matcher on its command line
    code = 'import sys; b = bytearray(16 * 1024 * 1024); sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.read()'
    matcher = {'name': 'probe', 'kind': 'redis', 'cmdline': 'bytearray\\(16 '}
    with subprocess.Popen([sys.executable, '-c', code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == 'ready\n'
            first = run(capsys, dict(FAST, textfile=textfile, matchers=[matcher]))
            assert first.get('failed') is not True, first
            state = json.loads((tmp_path / 'opsguard.state.json').read_text())
            state['services']['probe']['t'] -= 10  # as if the previous run was 10 s ago
            (tmp_path / 'opsguard.state.json').write_text(json.dumps(state))
            second = run(capsys, dict(FAST, textfile=textfile, matchers=[matcher]))
        finally:
            child.communicate('', timeout=30)
    assert first['changed'] is True and second['changed'] is True
    facts = second['ansible_facts']['opsguard_memory']
    assert facts['textfile']['path'] == textfile and facts['textfile']['written'] is True
    assert stat.S_IMODE(os.stat(textfile).st_mode) == 0o644
    with open(textfile, encoding='utf-8') as handle:
        families = parse(handle.read())
    assert facts['textfile']['series'] == sum(len(f['samples']) for f in families.values())
    probe = next(s for s in facts['services'] if s['name'] == 'probe')
    assert value(families, 'opsguard_service_memory_bytes', service='probe', kind='redis') == probe['rss_bytes'] >= 16 * 1024 * 1024
    assert probe['growth_bytes_per_second'] is not None  # the second run had a previous sample
    assert value(families, 'opsguard_service_growth_bytes_per_second', service='probe') == probe['growth_bytes_per_second']
    assert value(families, 'opsguard_memory_verdict', state=facts['verdict']) == 1
    assert value(families, 'opsguard_memory_limit_bytes', source=facts['limit']['source']) == facts['limit']['bytes']
    assert value(families, 'opsguard_collector_duration_seconds') > 0


def test_check_mode_renders_but_writes_nothing(capsys: pytest.CaptureFixture[str], tmp_path: t.Any) -> None:
    result = run(capsys, dict(FAST, textfile=str(tmp_path / 'opsguard.prom'), _ansible_check_mode=True))
    assert result.get('failed') is not True, result
    assert result['changed'] is False
    assert result['ansible_facts']['opsguard_memory']['textfile']['written'] is False
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize('args, expected', [
    ({'textfile': 'NAME/opsguard.txt'}, 'the file name must end in .prom'),
    ({'textfile': 'NAME/missing/opsguard.prom'}, 'does not exist; create it first'),
    ({'textfile': 'NAME/opsguard.prom', 'state_file': 'NAME/state.prom'}, 'state_file=NAME/state.prom must not end in .prom'),
    ({'state_file': 'NAME/state.json'}, 'is used only with textfile'),
    ({'textfile': 'NAME/opsguard.prom', 'available_warning': 'nan'}, 'available_warning=nan'),
])
def test_bad_paths_are_refused_before_anything_is_written(capsys: pytest.CaptureFixture[str], tmp_path: t.Any,
                                                          args: dict[str, t.Any], expected: str) -> None:
    args = {k: v.replace('NAME', str(tmp_path)) if isinstance(v, str) else v for k, v in args.items()}
    result = run(capsys, dict(FAST, **args))
    assert result['failed'] is True
    assert expected.replace('NAME', str(tmp_path)) in result['msg'] and 'invalid options' in result['msg']
    assert os.listdir(str(tmp_path)) == []


def test_an_unwritable_directory_fails_with_the_path(capsys: pytest.CaptureFixture[str], tmp_path: t.Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from ansible_collections.opsguard.anqicms.plugins.module_utils import metrics

    def denied(*_args: t.Any, **_kwargs: t.Any) -> t.NoReturn:
        raise PermissionError(13, 'Permission denied')

    monkeypatch.setattr(metrics, 'create_temporary', denied)
    result = run(capsys, dict(FAST, textfile=str(tmp_path / 'opsguard.prom')))
    assert result['failed'] is True and 'cannot write the metrics (textfile=%s)' % (tmp_path / 'opsguard.prom') in result['msg']
