# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resolving paths that come from options or from files we read back.

``os.path.realpath`` raises when a symbolic link on the way cannot be read (``/proc/1/exe`` without ptrace rights,
EACCES), which would surface as a traceback.  ``resolve`` turns that into the caller's own error with a sentence.
"""

from __future__ import annotations

import os


class UnresolvablePath(ValueError):
    """A path whose symbolic links cannot be followed."""


def resolve(path: str, what: str = 'path', error: type = UnresolvablePath) -> str:
    """The canonical path of ``path`` (symbolic links and ``..`` resolved), or ``error`` naming ``what``."""
    try:
        return os.path.realpath(path)
    except (OSError, ValueError) as exc:
        raise error('%s %r cannot be resolved: %s; nothing was done. Check the path and its permissions'
                    % (what, path[:300] if isinstance(path, str) else path, exc)) from None


def resolve_problem(path: str, what: str = 'path') -> str | None:
    """None when ``path`` resolves, else the sentence ``resolve`` would raise."""
    try:
        resolve(path, what)
    except UnresolvablePath as exc:
        return str(exc)
    return None
