# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every role's meta/argument_specs.yml must match its defaults/main.yml, and variables carry the role prefix.

Run with pytest, or as a script (exit status 1 and one line per mismatch).
"""
from __future__ import annotations

import pathlib
import sys

import pytest
import yaml

ROLES_DIR = pathlib.Path(__file__).resolve().parents[2] / 'roles'
ROLES = sorted(p.name for p in ROLES_DIR.iterdir() if (p / 'meta' / 'argument_specs.yml').is_file()) if ROLES_DIR.is_dir() else []


def mismatches(role_dir: pathlib.Path) -> list[str]:
    """Differences between defaults/main.yml and the main entry point of meta/argument_specs.yml."""
    role = role_dir.name
    defaults = yaml.safe_load((role_dir / 'defaults' / 'main.yml').read_text(encoding='utf-8')) or {}
    specs = yaml.safe_load((role_dir / 'meta' / 'argument_specs.yml').read_text(encoding='utf-8'))['argument_specs']
    options = specs['main'].get('options') or {}
    problems: list[str] = []
    prefix = '%s_' % role
    for name in sorted(set(defaults) - set(options)):
        problems.append('%s: %s is in defaults/main.yml but not in meta/argument_specs.yml' % (role, name))
    for name in sorted(set(options) - set(defaults)):
        problems.append('%s: %s is in meta/argument_specs.yml but not in defaults/main.yml' % (role, name))
    for name in sorted(set(defaults) & set(options)):
        if 'default' not in options[name]:
            problems.append('%s: %s has no default in meta/argument_specs.yml (defaults/main.yml: %r)' % (role, name, defaults[name]))
        elif options[name]['default'] != defaults[name] or type(options[name]['default']) is not type(defaults[name]):
            problems.append('%s: %s defaults differ: argument_specs %r, defaults/main.yml %r'
                            % (role, name, options[name]['default'], defaults[name]))
        if not options[name].get('description'):
            problems.append('%s: %s has no description' % (role, name))
    for entry, spec in specs.items():
        for name, option in (spec.get('options') or {}).items():
            if not name.startswith(prefix):
                problems.append('%s: %s (entry point %s) does not start with %s' % (role, name, entry, prefix))
            if entry != 'main' and name in options and 'default' in option and option['default'] != options[name].get('default'):
                problems.append('%s: %s default differs between entry points main and %s' % (role, name, entry))
    for name in defaults:
        if not name.startswith(prefix):
            problems.append('%s: default %s does not start with %s' % (role, name, prefix))
    return problems


@pytest.mark.parametrize('role', ROLES)
def test_argument_specs_match_defaults(role):
    assert mismatches(ROLES_DIR / role) == []


def test_the_check_finds_a_difference(tmp_path):
    role = tmp_path / 'demo'
    (role / 'defaults').mkdir(parents=True)
    (role / 'meta').mkdir()
    (role / 'defaults' / 'main.yml').write_text('demo_a: 1\ndemo_b: x\nother: 2\n')
    (role / 'meta' / 'argument_specs.yml').write_text(yaml.safe_dump({'argument_specs': {'main': {'options': {
        'demo_a': {'type': 'int', 'default': '1', 'description': ['a']},
        'demo_c': {'type': 'str', 'description': ['c']},
    }}}}))
    found = '\n'.join(mismatches(role))
    assert 'demo_b is in defaults/main.yml but not' in found
    assert 'demo_c is in meta/argument_specs.yml but not' in found
    assert 'demo_a defaults differ' in found
    assert 'default other does not start with demo_' in found


def test_roles_are_found():
    assert {'app', 'database', 'proxy'} <= set(ROLES)


if __name__ == '__main__':
    ALL = [problem for name in ROLES for problem in mismatches(ROLES_DIR / name)]
    sys.stdout.write(''.join(line + '\n' for line in ALL))
    sys.exit(1 if ALL else 0)
