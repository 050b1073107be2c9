# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bounds of the process options (PID, TCP port, duration, regular expression), checked before anything is read or signalled.

Each check returns the value it accepts or raises ProcessError with a sentence naming the option, the value and the range.
"""

from __future__ import annotations

import os
import re

from ansible_collections.opsguard.anqicms.plugins.module_utils.procfs import PROC, ProcessError, read

PID_MAX_LIMIT = 4194304  # the kernel's PID_MAX_LIMIT on 64-bit: pid_max can never be higher
MAX_WAIT_SECONDS = 86400.0  # longest wait of any duration option (one day)
MAX_PORT = 65535
MAX_PATTERN_LENGTH = 4096
ASCII_DIGITS = re.compile(r'[0-9]+')


def pid_max(proc: str = PROC) -> int:
    """The kernel's pid_max (highest PID + 1 it hands out); PID_MAX_LIMIT when it cannot be read or makes no sense."""
    try:
        text = read(os.path.join(proc, 'sys', 'kernel', 'pid_max')).strip()
    except (IOError, OSError, ValueError):
        return PID_MAX_LIMIT
    if not ASCII_DIGITS.fullmatch(text) or len(text) > 8:
        return PID_MAX_LIMIT
    return min(max(int(text), 2), PID_MAX_LIMIT)


def check_pid(value, what: str = 'pid', proc: str = PROC) -> int:
    """value as a PID the kernel could hand out (1 .. pid_max - 1), or ProcessError."""
    limit = pid_max(proc)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < limit:
        raise ProcessError('%s must be a process ID between 1 and %d (/proc/sys/kernel/pid_max is %d), got %r'
                           % (what, limit - 1, limit, value))
    return value


def check_port(value, what: str = 'port') -> int:
    """value as a TCP port (1 .. 65535), or ProcessError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PORT:
        raise ProcessError('%s must be a TCP port between 1 and %d, got %r' % (what, MAX_PORT, value))
    return value


def check_duration(value, what: str = 'timeout', maximum: float = MAX_WAIT_SECONDS) -> float:
    """value as a number of seconds, finite and within 0 .. maximum (NaN and infinities refused), or ProcessError."""
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        seconds = float('nan')
    if isinstance(value, bool) or not 0.0 <= seconds <= maximum:  # NaN fails every comparison
        raise ProcessError('%s must be a number of seconds from 0 to %d, got %r' % (what, maximum, value))
    return seconds


def compile_pattern(pattern: str, what: str = 'cmdline_pattern'):
    """pattern compiled as a Python regular expression, or ProcessError naming the problem."""
    if not isinstance(pattern, str) or not pattern:
        raise ProcessError('%s must be a non-empty regular expression, got %r' % (what, pattern))
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ProcessError('%s is %d characters long; at most %d are accepted' % (what, len(pattern), MAX_PATTERN_LENGTH))
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError, TypeError) as e:
        raise ProcessError('%s %r is not a valid Python regular expression: %s' % (what, pattern[:200], e or type(e).__name__))
