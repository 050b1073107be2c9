# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running one of the collection's modules with arguments and getting its result, as Ansible would.

``run_module_main`` runs ``main()`` in this process (unit tests); ``run_module_process`` runs the module file in a
new Python process with a JSON arguments file, the way Ansible runs a module on a host.
Import as ``ansible_collections.opsguard.anqicms.tests.utils.module_harness``.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import subprocess
import sys
import tempfile
from typing import Any, Callable

REPO = pathlib.Path(__file__).resolve().parents[2]
COLLECTIONS = REPO.parents[2] if REPO.parent.parent.name == 'ansible_collections' else REPO / '.collections'


def run_module_main(main: Callable[[], None], args: dict[str, Any], check: bool = False, diff: bool = False) -> dict[str, Any]:
    """Run a module's ``main()`` in-process with ``args`` and return its JSON result.

    A module that crashes raises here (a traceback is a test failure); a module that answers with ``fail_json``
    or ``exit_json`` returns its result. Works inside hypothesis ``@given`` tests: no function-scoped fixture
    is involved.
    """
    from unittest import mock  # pylint: disable=import-outside-toplevel

    from ansible.module_utils import _internal  # pylint: disable=import-outside-toplevel
    from ansible.module_utils._internal._json import _profiles  # pylint: disable=import-outside-toplevel
    from ansible.module_utils.testing import patch_module_args  # pylint: disable=import-outside-toplevel

    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    out = io.StringIO()
    # A module runs on the managed host: once a controller module has been imported in this process (a filter
    # plugin's test, ansible.errors), module warnings would go to the controller's display instead of the result
    # and the arguments would get the controller's UTF-8 check; the module on a host sees neither.
    was_controller = _internal.is_controller
    _internal.is_controller = False
    try:
        with mock.patch.object(_profiles, '_string_encoding_check_enabled', lambda: False), \
                patch_module_args(args), contextlib.redirect_stdout(out):
            try:
                main()
            except SystemExit:
                pass
            else:  # pragma: no cover - every module ends in exit_json/fail_json
                raise AssertionError('the module returned without exit_json/fail_json')
    finally:
        _internal.is_controller = was_controller
    text = out.getvalue()
    return json.loads(text[text.index('{'):])


def _python_path() -> list[str]:
    """The collection and the ansible-core this process uses (ansible-test puts it on sys.path, not in the venv)."""
    import ansible  # pylint: disable=import-outside-toplevel

    paths = [str(COLLECTIONS), os.path.dirname(os.path.dirname(os.path.abspath(ansible.__file__)))]
    paths += [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
    return list(dict.fromkeys(paths))


def run_module_process(name: str, args: dict[str, Any], check: bool = False, tmp: str | os.PathLike | None = None,
                       python: str | None = None, timeout: float = 600) -> dict[str, Any]:
    """Run ``opsguard.anqicms.<name>`` in a new Python process with a JSON arguments file; return its result.

    ``python`` defaults to the repository's .venv Python (this one when there is none); the arguments file is
    written to ``tmp`` (default /tmp) and removed afterwards.
    """
    payload = dict(args, _ansible_check_mode=check)
    venv_python = REPO / '.venv' / 'bin' / 'python'
    python = python or (str(venv_python) if venv_python.exists() else sys.executable)
    fd, argfile = tempfile.mkstemp(prefix='args-', suffix='.json', dir=str(tmp or '/tmp'))
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            json.dump({'ANSIBLE_MODULE_ARGS': payload}, handle)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(_python_path()))
        proc = subprocess.run([python, '-m', 'ansible_collections.opsguard.anqicms.plugins.modules.' + name, argfile],
                              capture_output=True, text=True, env=env, timeout=timeout, check=False)
    finally:
        os.unlink(argfile)
    try:
        return json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError('module %s printed no JSON (rc %d): %s %s'
                             % (name, proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])) from exc
