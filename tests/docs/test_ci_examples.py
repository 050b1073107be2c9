# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The CI examples of docs/ci.md: every YAML block parses, runs playbooks that exist with variables they take,
publishes the JUnit report memory_check writes, gates the emergency stop behind a person, and keeps secrets and
typed inputs out of command lines."""
from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGE = ROOT / 'docs' / 'ci.md'
PLAYBOOK_RE = re.compile(r'ansible-playbook\s+opsguard\.anqicms\.([a-z_]+)')
VARIABLE_RE = re.compile(r'\b(opsguard_[a-z_]+)\b')
JUNIT_RE = re.compile(r'-e\s+opsguard_junit_report=(\S+)')


def blocks() -> list[Any]:
    text = PAGE.read_text(encoding='utf-8')
    return [yaml.safe_load(block) for block in re.findall(r'^```yaml\n(.*?)^```', text, flags=re.S | re.M)]


def strings(node: Any) -> Iterator[str]:
    """Every string in a parsed YAML document, keys included."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def block_with(key: str) -> dict:
    found = [b for b in blocks() if isinstance(b, dict) and key in b]
    assert len(found) == 1, f'docs/ci.md should have exactly one YAML block with a top-level {key!r}'
    return found[0]


def github() -> dict:
    return block_with('jobs')


def gitlab() -> dict:
    return block_with('stages')


def gitlab_jobs() -> dict[str, dict]:
    return {name: job for name, job in gitlab().items() if isinstance(job, dict) and 'script' in job}


def input_spec(playbook: str) -> set[str]:
    """The variables a playbook takes: its first play's input spec."""
    plays = yaml.safe_load((ROOT / 'playbooks' / f'{playbook}.yml').read_text(encoding='utf-8'))
    return set(plays[0]['vars']['_opsguard_input_spec'])


def jobs() -> Iterator[tuple[str, Any]]:
    for name, job in github()['jobs'].items():
        yield f'github:{name}', job
    for name, job in gitlab_jobs().items():
        yield f'gitlab:{name}', job


def test_every_yaml_block_parses():
    parsed = blocks()
    assert len(parsed) >= 3 and all(isinstance(b, dict) for b in parsed)


def test_the_page_is_linked():
    assert '(docs/ci.md)' in (ROOT / 'README.md').read_text(encoding='utf-8')
    assert '(ci.md)' in (ROOT / 'docs' / 'index.md').read_text(encoding='utf-8')


@pytest.mark.parametrize('name, job', list(jobs()), ids=[name for name, dummy in jobs()])
def test_each_job_runs_existing_playbooks_with_their_variables(name, job):
    text = '\n'.join(strings(job))
    playbooks = PLAYBOOK_RE.findall(text)
    assert playbooks, f'{name} runs no playbook of the collection'
    for playbook in playbooks:
        assert (ROOT / 'playbooks' / f'{playbook}.yml').is_file(), f'{name} runs {playbook}, which does not exist'
    known = set().union(*(input_spec(p) for p in playbooks))
    documented = (ROOT / 'docs' / 'playbooks.md').read_text(encoding='utf-8')
    for variable in set(VARIABLE_RE.findall(text)):
        assert variable in known, f'{name} passes {variable}, which {", ".join(playbooks)} does not take'
        assert f'`{variable}`' in documented, f'{variable} is not in the variables table of docs/playbooks.md'


def test_the_pinned_control_node_matches_requirements_txt():
    pins = [line.strip() for line in (ROOT / 'requirements.txt').read_text(encoding='utf-8').splitlines()
            if line.strip() and not line.startswith('#')]
    for name, job in jobs():
        text = '\n'.join(strings(job)) + '\n'.join(strings(gitlab().get('.ansible', {})))
        for pin in pins:
            assert f'"{pin}"' in text, f'{name} does not install {pin} (requirements.txt)'


def test_the_collection_requirement_names_this_collection():
    galaxy = yaml.safe_load((ROOT / 'galaxy.yml').read_text(encoding='utf-8'))
    requirement = block_with('collections')['collections'][0]
    assert requirement['name'] == '%s.%s' % (galaxy['namespace'], galaxy['name'])


def test_github_schedule_and_dispatch_inputs():
    workflow = github()
    triggers = workflow.get('on', workflow.get(True))   # YAML 1.1 reads a bare `on` as true
    assert all(len(entry['cron'].split()) == 5 for entry in triggers['schedule'])
    declared = set(triggers['workflow_dispatch']['inputs'])
    used = set(re.findall(r'\binputs\.([a-z_]+)', '\n'.join(strings(workflow['jobs']))))
    assert used and used <= declared, f'inputs used but not declared: {used - declared}'


def test_github_publishes_and_keeps_the_junit_report():
    steps = github()['jobs']['memory-check']['steps']
    junit = {m for step in steps for m in JUNIT_RE.findall(step.get('run', ''))}
    assert len(junit) == 1, junit
    path = junit.pop()
    published = [s for s in steps if str(s.get('uses', '')).startswith('mikepenz/action-junit-report@')]
    assert published and published[0]['with']['report_paths'] == path
    assert 'cancelled()' in published[0]['if']      # also after the check failed
    kept = [s for s in steps if str(s.get('uses', '')).startswith('actions/upload-artifact@')]
    assert kept and path.startswith(kept[0]['with']['path']) and 'cancelled()' in kept[0]['if']
    assert github()['jobs']['memory-check']['permissions']['checks'] == 'write'


def test_github_stop_waits_for_a_reviewer_after_the_check():
    job = github()['jobs']['emergency-stop']
    assert job['environment'] and job['needs'] == 'memory-check'
    assert job['concurrency']['cancel-in-progress'] is False          # never cancel a stop under way
    assert 'concurrency' not in github()                             # a waiting approval must not hold back the checks
    assert 'needs.memory-check.outputs.failing' in job['if'] and 'cancelled()' in job['if']
    assert 'failing' in github()['jobs']['memory-check']['outputs']


def test_github_secrets_and_inputs_reach_steps_only_through_the_environment():
    for name, job in github()['jobs'].items():
        for step in job['steps']:
            script = step.get('run', '')
            assert '${{' not in script, f'{name}: an expression expanded into the script text: {script!r}'
            for key, value in step.get('with', {}).items():
                assert 'secrets.' not in str(value), f'{name}: a secret passed as an action input {key}'
    texts = [v for job in github()['jobs'].values() for step in job['steps'] for v in step.get('env', {}).values()]
    assert any('secrets.OPSGUARD_SSH_KEY' in v for v in texts) and any('secrets.OPSGUARD_VAULT_PASSWORD' in v for v in texts)


def test_gitlab_publishes_the_junit_report_even_when_the_check_fails():
    job = gitlab_jobs()['memory_check']
    junit = {m for line in job['script'] for m in JUNIT_RE.findall(line)}
    assert len(junit) == 1, junit
    assert job['artifacts']['reports']['junit'] == junit.pop()
    assert job['artifacts']['when'] == 'always'
    assert job['allow_failure']['exit_codes'] == [2]   # a fleet at fail_on must leave the manual stop available


def test_gitlab_stop_is_manual_and_reads_typed_inputs_from_a_file():
    job = gitlab_jobs()['emergency_stop']
    assert job['needs'] == ['memory_check'] and job['environment']['name']
    assert all(rule.get('when') == 'manual' for rule in job['rules'])
    run = [line for line in job['script'] if 'ansible-playbook' in line]
    assert run and all('-e @' in line and '$OPSGUARD_STOP_INSTANCES' not in line for line in run)


def test_gitlab_secrets_are_file_variables_not_in_the_file():
    pipeline = gitlab()
    defined = set(pipeline.get('variables', {})) | {v for job in gitlab_jobs().values() for v in job.get('variables', {})}
    assert not defined & {'OPSGUARD_SSH_KEY', 'OPSGUARD_KNOWN_HOSTS', 'ANSIBLE_VAULT_PASSWORD_FILE'}
    before = '\n'.join(pipeline['.ansible']['before_script'])
    assert 'ANSIBLE_PRIVATE_KEY_FILE="$OPSGUARD_SSH_KEY"' in before and 'echo' not in before
