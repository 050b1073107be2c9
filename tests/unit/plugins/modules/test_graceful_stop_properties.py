# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property-based tests of graceful_stop's option validation (issue 11).

Any value of an option's declared type is either refused with a message naming the option, or leads to a result;
never a traceback; and a refused call leaves the live target this test spawned running and unsignalled (it records
every SIGTERM it receives). Nothing here can signal a process the test did not start: calls that could get past
validation run in check mode, and those that name a PID, a port or a pidfile carry an exe constraint no process
satisfies.
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
import subprocess
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.opsguard.anqicms.plugins.modules import graceful_stop

SETTINGS = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NOBODY = '/nonexistent/opsguard-hypothesis/anqicms'  # an exe constraint no process satisfies
with open('/proc/sys/kernel/pid_max') as _f:
    PID_MAX = int(_f.read())
HOST = os.uname()[1]

TERM_RECORDER = '''
import signal, sys, time
path = sys.argv[1]
def on_term(*args):
    with open(path, 'a') as f:
        f.write('TERM\\n')
signal.signal(signal.SIGTERM, on_term)
print('READY', flush=True)
while True:
    time.sleep(60)
'''

FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=-5, max_value=90000),
                   st.sampled_from([1e10, 1e308, -1e308, 86400, 86400.000001, -0.0, 0.0, 2.0 ** 64]),
                   st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                   st.sampled_from(['nan', 'inf', '-inf', '1e400', 'NaN', '  7  ', '0x10', '']))
INTS = st.one_of(st.integers(), st.integers(min_value=-3, max_value=70000),
                 st.sampled_from([0, -1, 1, 65535, 65536, 2 ** 31, 2 ** 40, 2 ** 63, 2 ** 64, PID_MAX - 1, PID_MAX]))
HOSTILE_TEXT = ['', '\x00', 'a\x00b', '(', '[z-a]', '(' * 1200 + ')' * 1200, 'x' * 5000, '../../../../proc',
                '/proc/self/../../etc/passwd', '/dev/zero', '/tmp', '/', '*', 'anqicms-*.service', '--all', '-x',
                'SIGKILL', '9', '²', '١٥', 'SIG_IGN', 'NSIG', '/proc/1/exe', '~', '$HOME', '.*', 'sleep']
TEXT = st.one_of(st.text(max_size=60), st.sampled_from(HOSTILE_TEXT), st.text(max_size=30).map(lambda s: '/' + s))


def die_with_parent() -> None:
    """In the child: SIGKILL it when the test process that started it goes away, whatever way it goes."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Target(object):
    def __init__(self) -> None:
        self.record = tempfile.NamedTemporaryFile(prefix='opsguard-terms-', delete=False).name
        self.proc = subprocess.Popen([sys.executable, '-c', TERM_RECORDER, self.record], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
        assert self.proc.stdout.readline().strip() == 'READY'
        self.pid = self.proc.pid

    def untouched(self) -> bool:
        with open(self.record) as f:
            return self.proc.poll() is None and 'TERM' not in f.read()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        os.unlink(self.record)


@pytest.fixture
def target():
    # Function scope: ansible-test runs module tests in forked children that exit without module-scope
    # teardown, which left one target per test running after the suite.
    t = Target()
    yield t
    t.close()


def no_crash(result: dict) -> None:
    """A result or a clear failure: never a traceback, never the catch-all for unexpected errors."""
    if result.get('failed'):
        assert isinstance(result.get('msg'), str) and result['msg'], result
        assert 'Traceback' not in result['msg'] and 'unexpected error' not in result['msg'], result['msg']
        assert not result.get('changed'), result
    else:
        assert result['outcome'] in ('would_stop', 'already_stopped'), result


def refused_by_validation(result: dict) -> bool:
    return bool(result.get('failed')) and result['msg'].startswith(HOST + ': invalid option value: ')


def as_float(value):
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


@SETTINGS
@given(option=st.sampled_from(['timeout', 'kill_timeout', 'drain_timeout', 'port_release_timeout']), value=FLOATS)
def test_durations(run_main, target, option, value):
    number = as_float(value)
    valid = number is not None and math.isfinite(number) and 0 <= number <= 86400
    # A value that passes validation runs in check mode (no signal); any other runs for real and must be refused.
    result = run_main(graceful_stop.main, {'pid': target.pid, option: value, 'drain': True}, check=valid)
    no_crash(result)
    if valid:
        assert result['outcome'] == 'would_stop', result
    else:
        assert result['failed'] and option in result['msg'], result
    assert target.untouched()


@SETTINGS
@given(option=st.sampled_from(['pid', 'port']), value=INTS)
def test_pid_and_port(run_main, target, option, value):
    valid = 1 <= value < PID_MAX if option == 'pid' else 1 <= value <= 65535
    result = run_main(graceful_stop.main, {option: value, 'exe': NOBODY}, check=valid)
    no_crash(result)
    if valid:
        assert not refused_by_validation(result), result
    else:
        assert result['failed'] and refused_by_validation(result) and option in result['msg'], result
    assert target.untouched()


@SETTINGS
@given(ports=st.lists(INTS, max_size=5))
def test_drain_ports(run_main, target, ports):
    valid = all(1 <= p <= 65535 for p in ports)
    result = run_main(graceful_stop.main, {'pid': target.pid, 'drain': True, 'drain_ports': ports}, check=valid)
    no_crash(result)
    if valid:
        assert result['outcome'] == 'would_stop', result
    else:
        assert refused_by_validation(result) and 'drain_ports' in result['msg'], result
    assert target.untouched()


STRING_OPTIONS = ['pidfile', 'systemd_unit', 'exe', 'name', 'cmdline_pattern', 'signal', 'diagnostics_dir']


@SETTINGS
@given(option=st.sampled_from(STRING_OPTIONS), value=TEXT)
def test_strings(run_main, target, option, value):
    if option in ('pidfile', 'systemd_unit'):
        args = {option: value, 'exe': NOBODY}
    else:
        args = {'pid': target.pid, option: value}
    result = run_main(graceful_stop.main, args, check=True)
    no_crash(result)
    if refused_by_validation(result):
        assert option in result['msg'] or 'signal' in result['msg'], result['msg']
        # Refused in check mode means refused for real too, before anything happens.
        again = run_main(graceful_stop.main, args)
        assert refused_by_validation(again) and again['msg'] == result['msg'] and not again['changed']
    assert target.untouched()


PIDFILE_GARBAGE = [b'', b'\x00', b'12\x00', b'\xff\xfe', b'-1\n', b'0\n', b'99999999999999999999\n', b'\xd9\xa1\xd9\xa2\n',
                   b'\xc2\xb2\n', b'1' * 5000, b'  42  \n', b'42\ngarbage']


@SETTINGS
@given(content=st.one_of(st.binary(max_size=64), st.sampled_from(PIDFILE_GARBAGE)))
def test_pidfile_content(run_main, target, tmp_path_factory, content):
    path = os.path.join(str(tmp_path_factory.getbasetemp()), 'hypothesis.pid')
    with open(path, 'wb') as f:
        f.write(content)
    result = run_main(graceful_stop.main, {'pidfile': path, 'exe': NOBODY}, check=True)
    no_crash(result)
    first = content.strip(b' \t\r\n').split(b'\n', 1)[0].strip(b' \t\r')
    if not (first.isdigit() and first.isascii() and len(first) <= 8 and 1 <= int(first) < PID_MAX):
        assert result['failed'] and 'pidfile' in result['msg'], result
    assert target.untouched()
