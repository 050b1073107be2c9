# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQL text built from values: identifiers in backticks, every string value as a hex literal.

A string value is written as ``X'<hex of its UTF-8 bytes>'``. A hex literal holds no quote, no backslash
and no NUL, so it means the same bytes under every ``sql_mode`` (``NO_BACKSLASH_ESCAPES`` and
``ANSI_QUOTES`` included) and whatever the value holds. Numbers stay numbers; None is NULL.
A hex literal is a binary string: it compares byte for byte, as database and table names on Linux do.
"""

from __future__ import annotations

import math
import re

HEX_LITERAL_RE = re.compile(r"X'(?:[0-9A-F]{2})*'")


class SqlError(ValueError):
    """A value that no SQL text can be built from."""


def quote_ident(name: str) -> str:
    """Backtick-quote an identifier (database or table name)."""
    if not isinstance(name, str) or not name or '\0' in name:
        raise SqlError('invalid identifier %r' % (name,))
    return '`' + name.replace('`', '``') + '`'


def literal(value) -> str:
    """A SQL value: strings and bytes as ``X'..'`` hex literals, integers and finite floats as numbers, None as NULL."""
    if value is None:
        return 'NULL'
    if isinstance(value, bool):
        raise SqlError('a boolean is no SQL value here; got %r' % (value,))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SqlError('%r is no SQL number' % (value,))
        return repr(value)
    if isinstance(value, str):
        try:
            value = value.encode('utf-8')
        except UnicodeEncodeError:
            raise SqlError('%.60r cannot be encoded as UTF-8 (lone surrogate characters)' % (value,)) from None
    if isinstance(value, (bytes, bytearray)):
        return "X'%s'" % bytes(value).hex().upper()
    raise SqlError('%s is no SQL value; got %.60r' % (type(value).__name__, value))


def literal_list(values) -> str:
    """Comma-separated :func:`literal` values, for ``IN (...)``; an empty list is refused."""
    values = list(values)
    if not values:
        raise SqlError('an empty list of values cannot be written as SQL')
    return ', '.join(literal(v) for v in values)
