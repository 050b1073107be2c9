# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build an ``AnsibleModule`` whose integer options cannot crash it.

ansible-core converts ``type: int`` options with ``int(Decimal(value))``; for ``inf``, ``'Infinity'``
or ``'-inf'`` that raises ``OverflowError``, which escapes ``AnsibleModule()`` as a traceback before
the module can say anything. ``new_module`` catches it, parses the arguments again with every integer
option (top level, list elements and suboptions) left untyped, names each non-finite value and fails
with a message. ``no_log`` options stay masked in that second parse.
"""

from __future__ import annotations

import math

from ansible.module_utils.basic import AnsibleModule

_NON_FINITE_WORDS = ('inf', '+inf', '-inf', 'infinity', '+infinity', '-infinity', 'nan', '+nan', '-nan')


def untyped_ints(spec: dict) -> dict:
    """A copy of ``spec`` where every ``int`` (option or list element), at any depth, is ``raw``."""
    result = {}
    for name, option in spec.items():
        option = dict(option)
        if option.get('type') == 'int':
            option['type'] = 'raw'
        if option.get('elements') == 'int':
            option['elements'] = 'raw'
        if isinstance(option.get('options'), dict):
            option['options'] = untyped_ints(option['options'])
        result[name] = option
    return result


def is_non_finite(value) -> bool:
    """True for a float or a string that means infinity or NaN."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        return value.strip().lower() in _NON_FINITE_WORDS
    return False


def non_finite_ints(spec: dict, params, prefix: str = '') -> list:
    """``name=value`` for each integer option (at any depth) whose value is infinite or NaN."""
    found: list = []
    if not isinstance(params, dict):
        return found
    for name, option in spec.items():
        value = params.get(name)
        path = prefix + name
        if value is None:
            continue
        if option.get('type') == 'int' and is_non_finite(value):
            found.append('%s=%s' % (path, value))
        elif option.get('elements') == 'int' and isinstance(value, list):
            found.extend('%s[%d]=%s' % (path, i, v) for i, v in enumerate(value) if is_non_finite(v))
        if isinstance(option.get('options'), dict):
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                sub = '%s[%d].' % (path, i) if isinstance(value, list) else path + '.'
                found.extend(non_finite_ints(option['options'], item, sub))
    return found


def new_module(argument_spec: dict, name: str, **kwargs) -> AnsibleModule:
    """``AnsibleModule(argument_spec=argument_spec, **kwargs)``, refusing infinite integers with a message.

    ``name`` is the module's short name, used in the message.
    """
    try:
        return AnsibleModule(argument_spec=argument_spec, **kwargs)
    except OverflowError:
        module = AnsibleModule(argument_spec=untyped_ints(argument_spec), **kwargs)
        bad = non_finite_ints(argument_spec, module.params)
        module.fail_json(msg='%s refused, nothing was done: %s must be a finite integer'
                         % (name, ', '.join(bad) or 'an integer option'))
        raise  # pragma: no cover - fail_json exits
