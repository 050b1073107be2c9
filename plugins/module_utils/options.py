# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build an ``AnsibleModule`` whose integer options cannot crash or hang it.

ansible-core converts ``type: int`` options with ``int(Decimal(value))``: for ``inf``, ``'Infinity'`` or
``'-inf'`` that raises ``OverflowError``, which escapes ``AnsibleModule()`` as a traceback before the module
can say anything, and for ``'1e999999999'`` it builds a billion-digit integer (minutes of CPU). ``new_module``
looks at the raw arguments first: every integer option (top level, list elements, suboptions) whose value is
infinite, NaN or beyond 10**30 is set aside before ansible-core converts it, and the module then fails with
a message naming each one. ``no_log`` options stay masked as usual.
"""

from __future__ import annotations

import decimal
import math

from ansible.module_utils.basic import AnsibleModule

# No integer option of this collection means anything near 10**30; above it, conversion cost grows without bound.
INT_EXPONENT_MAX = 30


def unconvertible_int(value) -> bool:
    """True for a value ansible-core's int check would crash on (infinite, NaN) or spend minutes on."""
    if isinstance(value, bool) or isinstance(value, int):
        return False
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (str, bytes)):
        try:
            number = decimal.Decimal(value.decode('utf-8', 'replace') if isinstance(value, bytes) else value)
        except (decimal.DecimalException, ValueError, TypeError):
            return False  # not a number at all: ansible-core refuses it with its own message
        return not number.is_finite() or number.adjusted() > INT_EXPONENT_MAX
    return False


def take_unconvertible_ints(spec: dict, params, prefix: str = '') -> list:
    """Replace, in place, each unconvertible value of an integer option of ``spec``; ``name=value`` of each.

    The stand-in is 0, which every int check accepts (so that ansible-core's own messages do not hide ours);
    new_module fails before the module can use it.
    """
    found: list = []
    if not isinstance(params, dict):
        return found
    for name, option in spec.items():
        if not isinstance(option, dict) or params.get(name) is None:
            continue
        value = params[name]
        path = prefix + name
        if option.get('type') == 'int' and unconvertible_int(value):
            found.append('%s=%s' % (path, _show(value)))
            params[name] = 0
        elif option.get('elements') == 'int' and isinstance(value, list):
            for i, item in enumerate(value):
                if unconvertible_int(item):
                    found.append('%s[%d]=%s' % (path, i, _show(item)))
                    value[i] = 0
        if isinstance(option.get('options'), dict):
            if isinstance(value, list):
                for i, item in enumerate(value):
                    found.extend(take_unconvertible_ints(option['options'], item, '%s[%d].' % (path, i)))
            else:
                found.extend(take_unconvertible_ints(option['options'], value, path + '.'))
    return found


def _show(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + '...'


class GuardedModule(AnsibleModule):
    """An AnsibleModule that sets aside integer values ansible-core cannot convert (see the module docstring)."""

    unconvertible: list

    def _load_params(self) -> None:
        super()._load_params()
        self.unconvertible = take_unconvertible_ints(self.argument_spec, self.params)


def new_module(argument_spec: dict, name: str, module_class: type = GuardedModule, **kwargs) -> AnsibleModule:
    """``AnsibleModule(argument_spec=argument_spec, **kwargs)`` that refuses infinite or absurd integers with a message.

    ``name`` is the module's short name, used in the message; ``module_class`` a subclass of GuardedModule.
    """
    module = module_class(argument_spec=argument_spec, **kwargs)
    if module.unconvertible:
        module.fail_json(msg='%s refused, nothing was done: %s must be a finite integer'
                         % (name, ', '.join(module.unconvertible)))
    return module
