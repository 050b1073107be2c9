# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release metadata agrees with itself: every plugin, module and role entry point was added in a version this
collection released or is about to release (galaxy.yml), and meta/runtime.yml asks for the ansible-core it is
tested with."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest
import yaml
from ansible.release import __version__ as ANSIBLE_CORE_VERSION
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV_BIN = pathlib.Path(os.environ.get('VENV', ROOT / '.venv')) / 'bin'
COLLECTION = 'opsguard.anqicms'
GALAXY = yaml.safe_load((ROOT / 'galaxy.yml').read_text(encoding='utf-8'))
RELEASED = set((yaml.safe_load((ROOT / 'changelogs' / 'changelog.yaml').read_text(encoding='utf-8')).get('releases') or {}))
KNOWN = RELEASED | {GALAXY['version']}


def _documented() -> list[tuple[str, str]]:
    """(what, version_added) of every plugin of this collection and of every role entry point, from ansible-doc."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / '.collections'))
    done = subprocess.run([str(VENV_BIN / 'ansible-doc'), '--metadata-dump', '--no-fail-on-errors', COLLECTION],
                          cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=300)
    found = []
    for kind, plugins in json.loads(done.stdout)['all'].items():
        for name, data in plugins.items():
            if not name.startswith(COLLECTION + '.'):
                continue
            if kind == 'role':
                found += [('role %s entry point %s' % (name, entry), spec.get('version_added'))
                          for entry, spec in (data.get('entry_points') or {}).items()]
            else:
                found.append(('%s %s' % (kind, name), (data.get('doc') or {}).get('version_added')))
    return found


DOCUMENTED = _documented()


def test_plugins_modules_and_roles_are_found():
    kinds = {what.split()[0] for what, dummy in DOCUMENTED}
    assert {'module', 'filter', 'role'} <= kinds, kinds


@pytest.mark.parametrize('what, version_added', DOCUMENTED, ids=[what for what, dummy in DOCUMENTED])
def test_version_added_is_a_release_of_this_collection(what, version_added):
    assert version_added in KNOWN, '%s says version_added %r; releases: %s' % (what, version_added, sorted(KNOWN))


def test_requires_ansible_admits_the_tested_ansible_core_and_no_older_minor():
    runtime = yaml.safe_load((ROOT / 'meta' / 'runtime.yml').read_text(encoding='utf-8'))
    spec = SpecifierSet(runtime['requires_ansible'])
    tested = Version(ANSIBLE_CORE_VERSION)
    assert tested in spec
    assert Version('%d.%d.0' % (tested.major, tested.minor - 1)) not in spec, 'requires_ansible admits an untested ansible-core'


def test_dependencies_are_what_the_collection_itself_uses():
    deps = set(GALAXY.get('dependencies') or {})
    used = set()
    for path in list((ROOT / 'roles').rglob('*.yml')) + list((ROOT / 'playbooks').rglob('*.yml')) + list((ROOT / 'plugins').rglob('*.py')):
        text = path.read_text(encoding='utf-8')
        used |= {dep for dep in deps | {'ansible.posix'} if dep + '.' in text}
    assert used == deps, 'galaxy.yml dependencies %s, used by roles, playbooks and plugins: %s' % (sorted(deps), sorted(used))
