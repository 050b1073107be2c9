# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property-based tests of anqicms_config: any value of an option's declared type, and any content of
config.json, is either refused with a message (file bytes and mode unchanged, nothing created) or
leads to a result whose file AnQiCMS can read; never a traceback; a secret never reaches the output.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.opsguard.anqicms.plugins.module_utils.anqicms_config import check_document
from ansible_collections.opsguard.anqicms.plugins.modules import anqicms_config

ORIGINAL = b'{\n\t"mysql": {\n\t\t"database": "site1",\n\t\t"password": "old-pass"\n\t},\n\t"server": {\n\t\t"port": 8001\n\t}\n}'
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(['', '\x00', '\ud800', 'production', 'x' * 300]),
)
json_like = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(['mysql', 'server', 'port', 'Port', 'password', 'env'])), inner, max_size=4),
), max_leaves=20)


def strict_load(data: bytes):
    def refuse(name):
        raise AssertionError('%s written to config.json' % name)
    return json.loads(data.decode('utf-8'), parse_constant=refuse)


class Workdir:
    """A fresh directory per example (hypothesis cannot use function-scoped fixtures)."""

    def __init__(self, content: bytes | None = ORIGINAL):
        self.dir = tempfile.mkdtemp(prefix='anqicms_config_prop.')
        self.path = os.path.join(self.dir, 'config.json')
        if content is not None:
            with open(self.path, 'wb') as handle:
                handle.write(content)
            os.chmod(self.path, 0o600)

    def state(self):
        if not os.path.exists(self.path):
            return None, None, sorted(os.listdir(self.dir))
        with open(self.path, 'rb') as handle:
            return handle.read(), stat.S_IMODE(os.stat(self.path).st_mode), sorted(os.listdir(self.dir))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.dir)


def check_outcome(run_main, args, content=ORIGINAL, check=False):
    """Run once; return the result after checking the refusal / success contract."""
    with Workdir(content) as work:
        before = work.state()
        result = run_main(anqicms_config.main, dict(args, path=work.path), check=check, diff=True)
        if result.get('failed'):
            assert isinstance(result.get('msg'), str) and result['msg'], result
            assert work.state() == before, 'refused, yet the file changed'
        else:
            if check:
                assert work.state() == before, 'check mode changed the file'
            elif os.path.exists(work.path):
                with open(work.path, 'rb') as handle:
                    data = strict_load(handle.read())
                check_document(data)
                if content is None and args.get('mode') is None:
                    assert stat.S_IMODE(os.stat(work.path).st_mode) == 0o600
        return result


@FAST
@given(port=st.one_of(st.integers(), st.floats(), st.text(max_size=12), st.sampled_from(['inf', '-inf', 'NaN', '1e99999999', '8001.0', ' 8001 '])),
       section=st.sampled_from(['mysql', 'server']), check=st.booleans())
def test_any_port(run_main, port, section, check):
    result = check_outcome(run_main, {section: {'port': port}}, check=check)
    if not result.get('failed') and not check:
        assert 1 <= result['config'][section]['port'] <= 65535


@FAST
@given(key=st.sampled_from([('mysql', 'database'), ('mysql', 'user'), ('mysql', 'host'), ('mysql', 'password'),
                            ('server', 'env'), ('server', 'log_level')]),
       value=st.one_of(st.text(max_size=300), st.sampled_from(['\x00', 'a\nb', '\ud800', 'x' * 5000])))
def test_any_string_setting(run_main, key, value):
    section, name = key
    check_outcome(run_main, {section: {name: value}})


@FAST
@given(value=st.one_of(st.booleans(), st.text(max_size=6), st.integers()))
def test_any_use_default(run_main, value):
    check_outcome(run_main, {'mysql': {'use_default': value}})


@FAST
@given(value=st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(['mysql', 'server', 'Server', 'plugin'])), json_like, max_size=4),
       check=st.booleans())
def test_any_settings(run_main, value, check):
    check_outcome(run_main, {'settings': value, 'server': {'port': 8002}}, check=check)


@FAST
@given(mode=st.one_of(st.none(), st.integers(min_value=-10, max_value=0o20000), st.text(max_size=8),
                      st.sampled_from(['0600', 'u=rw,go=', 'u+x', 'a-w', '0o644', '7777'])),
       owner=st.one_of(st.none(), st.text(max_size=6), st.sampled_from(['root', '0', '4294967296'])),
       group=st.one_of(st.none(), st.text(max_size=6), st.sampled_from(['root', '0'])),
       missing=st.booleans())
def test_any_file_attributes(run_main, mode, owner, group, missing):
    args = {'server': {'port': 8002}, 'mode': mode, 'owner': owner, 'group': group}
    check_outcome(run_main, args, content=None if missing else ORIGINAL)


@FAST
@given(create=st.booleans(), backup=st.booleans(), check=st.booleans(), missing=st.booleans())
def test_any_flags(run_main, create, backup, check, missing):
    result = check_outcome(run_main, {'create': create, 'backup': backup, 'server': {'port': 8002}},
                           content=None if missing else ORIGINAL, check=check)
    assert result.get('failed', False) == (missing and not create)


@FAST
@given(content=st.binary(max_size=200))
def test_any_file_bytes(run_main, content):
    check_outcome(run_main, {'server': {'port': 8002}}, content=content)


@FAST
@given(doc=json_like, check=st.booleans())
def test_any_json_file(run_main, doc, check):
    content = json.dumps(doc, allow_nan=True).encode('utf-8', 'surrogatepass')
    check_outcome(run_main, {'mysql': {'host': 'db'}}, content=content, check=check)


@FAST
# 'Pw<' first: an all-digit secret such as 00000000 also occurs by chance in timestamps and sizes of the output.
@given(secret=st.text(alphabet='abcdefghijKLMNOP0123456789<>&-_', min_size=5, max_size=27).map(lambda text: 'Pw<' + text),
       way=st.sampled_from(['mysql', 'settings.mysql', 'settings.plugin', 'settings.deep']),
       check=st.booleans(), broken=st.booleans())
def test_a_secret_never_reaches_the_output(run_main, secret, way, check, broken):
    args = {
        'mysql': {'mysql': {'password': secret}},
        'settings.mysql': {'settings': {'mysql': {'password': secret}}},
        'settings.plugin': {'settings': {'plugin': {'smtp_password': secret}}},
        'settings.deep': {'settings': {'a': [{'b': {'api_token': secret}}]}},
    }[way]
    result = check_outcome(run_main, dict(args, server={'port': 8002}), content=b'{"a": NaN}' if broken else ORIGINAL, check=check)
    assert result.get('failed', False) == broken
    assert secret not in json.dumps(result)


@pytest.fixture(scope='module', autouse=True)
def no_fsync():
    """fsync makes each example wait for the disk; the properties are about content, not durability."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(anqicms_config.os, 'fsync', lambda fd: None)
        yield
