# Copyright: opsguard maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of a playbook's extra variables against a declared spec, before the playbook touches anything.

``playbook_input_problems`` returns one sentence per problem ([] when every input is fine);
``playbook_inputs`` returns the inputs converted to their types with the spec's defaults filled in.
Documentation: playbook_input_problems.yml and playbook_inputs.yml next to this file.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import typing as t
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.module_utils.record import url_problem

MAX_DEFAULT = 2 ** 31 - 1
OMIT_PREFIX = '__omit_place_holder__'
TYPES = ('int', 'float', 'bool', 'str', 'list', 'dict', 'path', 'count_or_percent', 'host_instance_list', 'backup_id',
         'host', 'url')
RULE_KEYS = frozenset(('type', 'min', 'max', 'choices', 'default', 'required', 'allow_empty', 'absolute', 'secret',
                       'renamed_from', 'description'))
TRUE_WORDS = frozenset(('true', 'yes', 'on', 'y', '1'))
FALSE_WORDS = frozenset(('false', 'no', 'off', 'n', '0'))
INT_RE = re.compile(r'^[+-]?[0-9]{1,30}$')
FLOAT_RE = re.compile(r'^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$')
PERCENT_RE = re.compile(r'^([0-9]{1,3})%$')
INSTANCE_NAME_RE = re.compile(r'^[a-z0-9_-]{1,64}$')
BACKUP_ID_RE = re.compile(r'^[0-9]{8}T[0-9]{6}(?:[0-9]{6})?Z$')
HOST_LABEL_RE = re.compile(r'^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$')


class InputProblem(ValueError):
    """A value that does not fit its rule; the message is the sentence shown to the operator."""


def show(value: t.Any, secret: bool = False) -> str:
    """A value as an operator typed it, short enough for one sentence."""
    if secret:
        return 'a value of type %s (not shown)' % type(value).__name__
    if isinstance(value, bool):
        return '%s (a boolean)' % ('true' if value else 'false')
    if isinstance(value, str):
        text = value if len(value) <= 80 else value[:77] + '...'
        return "'%s'" % text.replace('\n', '\\n')
    if isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + '...'
    try:
        text = json.dumps(value, default=str, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    text = text if len(text) <= 80 else text[:77] + '...'
    return '%s (a %s)' % (text, type(value).__name__)


def given(values: Mapping, name: str) -> bool:
    """Whether ``name`` was given: present, not None, not Ansible's omit placeholder."""
    if name not in values:
        return False
    value = values[name]
    return value is not None and not (isinstance(value, str) and value.startswith(OMIT_PREFIX))


def _bounds(rule: Mapping, default_min: t.Any = 0) -> tuple:
    low = rule.get('min', default_min)
    high = rule.get('max', MAX_DEFAULT)
    return low, high


def _range_text(low: t.Any, high: t.Any) -> str:
    if low is not None and high is not None:
        return 'from %s to %s' % (low, high)
    if low is not None:
        return '%s or more' % low
    if high is not None:
        return 'at most %s' % high
    return ''


def _to_number(name: str, value: t.Any, rule: Mapping, whole: bool) -> t.Any:
    secret = bool(rule.get('secret'))
    low, high = _bounds(rule)
    kind = 'a whole number' if whole else 'a number'
    expected = '%s %s' % (kind, _range_text(low, rule.get('max')))
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputProblem('%s must be %s, got %s.' % (name, expected, show(value, secret)))
    number: t.Any = value
    if isinstance(value, str):
        text = value.strip()
        if whole and INT_RE.match(text):
            number = int(text)
        elif len(text) <= 40 and FLOAT_RE.match(text):
            number = float(text)
        else:
            raise InputProblem('%s must be %s, got %s.' % (name, expected, show(value, secret)))
    if isinstance(number, float):
        if not math.isfinite(number):
            raise InputProblem('%s must be %s, got %s.' % (name, expected, show(value, secret)))
        if whole:
            if not number.is_integer():
                raise InputProblem('%s must be %s, got %s.' % (name, expected, show(value, secret)))
            number = int(number)
    if (low is not None and number < low) or (high is not None and number > high):
        if high is not None and number > high and 'max' not in rule:
            expected = '%s no larger than %s' % (kind, high)
        raise InputProblem('%s must be %s, got %s.' % (name, expected, show(value, secret)))
    return number


def _to_bool(name: str, value: t.Any, rule: Mapping) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise InputProblem('%s must be true or false, got %s.' % (name, show(value, rule.get('secret'))))


def _to_str(name: str, value: t.Any, rule: Mapping) -> str:
    secret = bool(rule.get('secret'))
    choices = rule.get('choices')
    if not isinstance(value, str):
        if choices:
            raise InputProblem('%s must be one of %s, got %s.' % (name, ', '.join(map(str, choices)), show(value, secret)))
        raise InputProblem('%s must be a string, got %s.' % (name, show(value, secret)))
    if choices and value not in choices:
        raise InputProblem('%s must be one of %s, got %s.' % (name, ', '.join(map(str, choices)), show(value, secret)))
    if not value.strip() and not rule.get('allow_empty', False):
        raise InputProblem('%s must not be empty, got %s.' % (name, show(value, secret)))
    if '\x00' in value:
        raise InputProblem('%s must not contain a NUL character, got %s.' % (name, show(value, secret)))
    return value


def _to_path(name: str, value: t.Any, rule: Mapping) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputProblem('%s must be a path, got %s.' % (name, show(value, rule.get('secret'))))
    if '\x00' in value or '\n' in value:
        raise InputProblem('%s must be a path without NUL or newline characters, got %s.' % (name, show(value, rule.get('secret'))))
    if rule.get('absolute') and not value.startswith('/'):
        raise InputProblem('%s must be an absolute path (starting with /), got %s.' % (name, show(value, rule.get('secret'))))
    return value


def _to_list(name: str, value: t.Any, rule: Mapping) -> list:
    if isinstance(value, str):
        items = [part.strip() for part in value.split(',') if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise InputProblem('%s must be a list (or a comma-separated string), got %s.' % (name, show(value, rule.get('secret'))))
    if not items and not rule.get('allow_empty', True):
        raise InputProblem('%s must not be empty, got %s.' % (name, show(value, rule.get('secret'))))
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise InputProblem('%s must be a list of non-empty strings, but it holds %s.' % (name, show(item, rule.get('secret'))))
    return [item.strip() for item in items]


def _to_host_instances(name: str, value: t.Any, rule: Mapping) -> list:
    items = _to_list(name, value, rule)
    for item in items:
        host, sep, instance = item.partition(':')
        if not sep or not host or not instance or not (INSTANCE_NAME_RE.match(instance) or instance.startswith('/')):
            raise InputProblem('%s entries must be "host:instance" (instance = the app_instances name, or the install '
                               'directory starting with /), got %s.' % (name, show(item)))
    return items


def _to_count_or_percent(name: str, value: t.Any, rule: Mapping) -> t.Any:
    low = _bounds(rule)[0]
    expected = ('%s must be a count (a whole number %s) or a percentage from 0%% to 100%% such as "50%%", got %s.'
                % (name, _range_text(low, rule.get('max')), show(value, rule.get('secret'))))
    if isinstance(value, str):
        match = PERCENT_RE.match(value.strip())
        if match:
            if int(match.group(1)) > 100:
                raise InputProblem(expected)
            return '%d%%' % int(match.group(1))
    try:
        return _to_number(name, value, rule, whole=True)
    except InputProblem:
        raise InputProblem(expected) from None


def _to_backup_id(name: str, value: t.Any, rule: Mapping) -> str:
    choices = list(rule.get('choices') or [])
    words = ', '.join(["'latest'"] + ["'%s'" % c for c in choices if c != 'latest'])
    if isinstance(value, str) and (value == 'latest' or value in choices or BACKUP_ID_RE.match(value)):
        return value
    raise InputProblem('%s must be %s or a backup id of the form YYYYmmddTHHMMSS[ffffff]Z, got %s.' % (name, words, show(value)))


def _to_host(name: str, value: t.Any, rule: Mapping) -> str:
    """A DNS name or an IP address (IPv4, IPv6), as a client connects to it; '' when allow_empty."""
    expected = '%s must be a host name or an IP address, got %s.' % (name, show(value, rule.get('secret')))
    if not isinstance(value, str):
        raise InputProblem(expected)
    if value == '' and rule.get('allow_empty', False):
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    labels = value[:-1].split('.') if value.endswith('.') else value.split('.')
    if len(value) > 253 or not all(HOST_LABEL_RE.match(label) for label in labels) or labels[-1].isdigit():
        # All-digit last label: a mistyped IPv4 address (999.1.1.1), no name.
        raise InputProblem(expected)
    return value


def _to_url(name: str, value: t.Any, rule: Mapping) -> str:
    """An http(s) URL such as a webhook's ('' when allow_empty); the value may carry a token and is never shown."""
    if value == '' and rule.get('allow_empty', False):
        return value
    problem = url_problem(value, name)
    if problem:
        raise InputProblem(problem + '.')
    return value


def _to_dict(name: str, value: t.Any, rule: Mapping) -> dict:
    if not isinstance(value, Mapping):
        raise InputProblem('%s must be a dict, got %s.' % (name, show(value, rule.get('secret'))))
    return dict(value)


CONVERTERS: dict[str, t.Callable[[str, t.Any, Mapping], t.Any]] = {
    'int': lambda name, value, rule: _to_number(name, value, rule, whole=True),
    'float': lambda name, value, rule: _to_number(name, value, rule, whole=False),
    'bool': _to_bool,
    'str': _to_str,
    'path': _to_path,
    'list': _to_list,
    'dict': _to_dict,
    'count_or_percent': _to_count_or_percent,
    'host_instance_list': _to_host_instances,
    'backup_id': _to_backup_id,
    'host': _to_host,
    'url': _to_url,
}


def convert(name: str, value: t.Any, rule: Mapping) -> t.Any:
    """``value`` of input ``name`` converted by ``rule``; raises InputProblem with the sentence to show."""
    return CONVERTERS[rule['type']](name, value, rule)


def _check_spec(spec: t.Any, renamed: t.Any) -> dict:
    """The old-name -> new-name map; a broken spec is a programming error, refused with what is wrong."""
    if not isinstance(spec, Mapping) or not spec:
        raise AnsibleFilterError('playbook_input_problems: the spec must be a non-empty dict of {name: {type: ...}}, got %s' % show(spec))
    for name, rule in spec.items():
        if not isinstance(rule, Mapping):
            raise AnsibleFilterError('playbook_input_problems: the rule of %s must be a dict, got %s' % (name, show(rule)))
        if rule.get('type') not in TYPES:
            raise AnsibleFilterError('playbook_input_problems: %s has type %s; known types: %s' % (name, show(rule.get('type')), ', '.join(TYPES)))
        unknown = sorted(set(rule) - RULE_KEYS)
        if unknown:
            raise AnsibleFilterError('playbook_input_problems: the rule of %s has unknown keys %s; known keys: %s'
                                     % (name, ', '.join(map(str, unknown)), ', '.join(sorted(RULE_KEYS))))
    mapping: dict[str, str] = {}
    if renamed not in (None, ''):
        if not isinstance(renamed, Mapping):
            raise AnsibleFilterError('playbook_input_problems: renamed must be a dict {old name: new name}, got %s' % show(renamed))
        mapping.update({str(k): str(v) for k, v in renamed.items()})
    for name, rule in spec.items():
        old = rule.get('renamed_from')
        for one in ([old] if isinstance(old, str) else list(old or [])):
            mapping[str(one)] = name
    return mapping


def _collect(values: t.Any, spec: t.Any, renamed: t.Any) -> tuple[list[str], dict[str, t.Any]]:
    mapping = _check_spec(spec, renamed)
    if not isinstance(values, Mapping):
        raise AnsibleFilterError('playbook_input_problems: the input must be a dict of {variable: value}, got %s' % show(values))
    problems = ['%s was renamed %s.' % (old, new) for old, new in mapping.items() if given(values, old)]
    result: dict[str, t.Any] = {}
    for name, rule in spec.items():
        if not given(values, name):
            if rule.get('required'):
                problems.append('%s is required.' % name)
            result[name] = rule.get('default')
            continue
        try:
            result[name] = convert(name, values[name], rule)
        except InputProblem as problem:
            problems.append(str(problem))
    return problems, result


def playbook_input_problems(values: t.Any, spec: t.Any, renamed: t.Any = None) -> list[str]:
    """One sentence per problem with the inputs ``values`` under ``spec``; [] when all is fine."""
    return _collect(values, spec, renamed)[0]


def playbook_inputs(values: t.Any, spec: t.Any, renamed: t.Any = None) -> dict[str, t.Any]:
    """The inputs converted to their types, defaults filled in; refuses inputs that have problems."""
    problems, result = _collect(values, spec, renamed)
    if problems:
        raise AnsibleFilterError(' '.join(problems))
    return result


class FilterModule:
    """Playbook input checks."""

    def filters(self) -> dict[str, t.Callable]:
        return {
            'playbook_input_problems': playbook_input_problems,
            'playbook_inputs': playbook_inputs,
        }
