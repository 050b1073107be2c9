# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters proxy_sites and proxy_failover_problems of the proxy role."""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.filter import proxy as F

import yaml

FILTER_DIR = pathlib.Path(F.__file__).parent
INSTANCES = [
    {'name': 'site1', 'port': 8001, 'db_password': 'pw1', 'server_name': 'site1.test'},
    {'name': 'site2', 'port': 8002, 'db_password': 'pw2', 'server_name': 'site2.test',
     'sites': [{'name': 'blog', 'server_name': 'blog.site2.test'}]},
]
DEFAULTS = {'proxy_connect_timeout': 2, 'proxy_read_timeout': 60, 'proxy_next_upstream_tries': 3,
            'proxy_next_upstream_timeout': 10, 'proxy_max_fails': 1, 'proxy_fail_timeout': 10}


def test_the_filters_are_registered_under_their_names():
    assert F.FilterModule().filters() == {'proxy_sites': F.proxy_sites, 'proxy_failover_problems': F.proxy_failover_problems}


@pytest.mark.parametrize('name', ['proxy_sites', 'proxy_failover_problems'])
def test_each_filter_has_its_documentation(name):
    doc = yaml.safe_load((FILTER_DIR / (name + '.yml')).read_text(encoding='utf-8'))
    assert doc['DOCUMENTATION']['name'] == name and set(doc) == {'DOCUMENTATION', 'EXAMPLES', 'RETURN'}


# ----------------------------------------------------------------------------------------------- proxy_sites

def test_one_site_per_instance_when_no_sites_are_given():
    assert F.proxy_sites([], INSTANCES, 80) == [
        {'name': 'site1', 'server_names': ['site1.test'], 'backends': ['127.0.0.1:8001'], 'listen': 80, 'upstream': 'anqicms_site1'},
        {'name': 'site2', 'server_names': ['site2.test', 'blog.site2.test'], 'backends': ['127.0.0.1:8002'], 'listen': 80,
         'upstream': 'anqicms_site2'},
    ]


def test_an_instance_without_a_server_name_serves_name_localhost():
    got = F.proxy_sites(None, [{'name': 'a-b', 'port': '9000', 'server_name': ''}], '8080')
    assert got == [{'name': 'a-b', 'server_names': ['a-b.localhost'], 'backends': ['127.0.0.1:9000'], 'listen': '8080',
                    'upstream': 'anqicms_a_b'}]


def test_given_sites_are_used_as_they_are_with_the_default_listen():
    sites = [{'name': 'www', 'server_names': ['a.example', 'b.example'], 'backends': ['10.0.0.1:8001', '10.0.0.2:8001']},
             {'name': 'admin', 'server_names': ['c.example'], 'backends': ['unix:/run/a.sock'], 'listen': '127.0.0.1:8080'},
             {'name': 'x_y', 'server_names': ['~^(www\\.)?d\\.example$'], 'backends': ['[::1]:8001'], 'listen': None}]
    got = F.proxy_sites(sites, INSTANCES, 80)
    assert [s['listen'] for s in got] == [80, '127.0.0.1:8080', 80]
    assert [s['upstream'] for s in got] == ['anqicms_www', 'anqicms_admin', 'anqicms_x_y']
    assert got[0]['backends'] == ['10.0.0.1:8001', '10.0.0.2:8001'] and got[2]['server_names'] == ['~^(www\\.)?d\\.example$']
    assert sites[0] == {'name': 'www', 'server_names': ['a.example', 'b.example'], 'backends': ['10.0.0.1:8001', '10.0.0.2:8001']}


def test_a_listen_with_parameters_is_kept():
    got = F.proxy_sites([{'name': 's', 'server_names': ['a'], 'backends': ['b:1'], 'listen': '443 ssl'}], [], 80)
    assert got[0]['listen'] == '443 ssl'


@pytest.mark.parametrize('sites', [None, '', []])
def test_no_sites_and_no_instances_give_nothing(sites):
    assert F.proxy_sites(sites, [], 80) == []


SITE = {'name': 'www', 'server_names': ['a.example'], 'backends': ['10.0.0.1:8001']}


@pytest.mark.parametrize('sites, instances, message', [
    ('www', [], 'proxy_sites must be a list of {name, server_names, backends, listen}, got str'),
    (['www'], [], 'proxy_sites item 1 must be a dict with name, server_names and backends, got str'),
    ([dict(SITE, name='a b')], [], 'proxy_sites item 1: name="a b" must be letters, digits, _ and -'),
    ([dict(SITE, name=None)], [], 'proxy_sites item 1: name=null'),
    ([dict(SITE, name='www\n')], [], 'proxy_sites item 1: name="www\\n"'),
    ([dict(SITE, server_names='a.example')], [], 'proxy_sites item 1 (www): server_names must be a non-empty list, got "a.example"'),
    ([dict(SITE, server_names=[])], [], 'server_names must be a non-empty list, got []'),
    ([dict(SITE, server_names=['a.example;'])], [], 'server_names item "a.example;" must be one word'),
    ([dict(SITE, server_names=['a b'])], [], 'server_names item "a b" must be one word'),
    ([dict(SITE, backends=[])], [], 'proxy_sites item 1 (www): backends must be a non-empty list, got []'),
    ([{'name': 'www', 'server_names': ['a']}], [], 'backends must be a non-empty list, got null'),
    ([dict(SITE, backends=['10.0.0.1:8001 down'])], [], 'backends item "10.0.0.1:8001 down" must be one word'),
    ([dict(SITE, backends=[8001])], [], 'backends item 8001 must be one word'),
    ([dict(SITE, listen='80; return 301')], [], 'proxy_sites item 1 (www): listen="80; return 301" must be a port'),
    ([dict(SITE, listen=True)], [], 'listen=true'),
    ([SITE, dict(SITE, server_names=['b.example'])], [], 'site name "www" is used by two sites'),
    ([SITE, dict(SITE, name='other')], [], 'server name "a.example" is used by sites www and other'),
    ([], [{'name': 'site1', 'db_password': 'pw'}], 'app_instances item 1 (site1) has no port: the proxy needs it for the backend'),
    ([], [{'name': 'a', 'port': 1, 'server_name': 'x.test'}, {'name': 'b', 'port': 2, 'server_name': 'x.test'}],
     'server name "x.test" is used by sites a and b'),
    ([], [{'name': 'a', 'port': 1, 'server_name': 'x test'}], 'app_instances item 1 (a): server names item "x test" must be one word'),
    ([], [{'name': 'A', 'port': 1}], "app_instances item 1: name='A'"),
    ([], 'x', 'app_instances must be a list'),
])
def test_a_bad_site_is_refused_naming_it(sites, instances, message):
    with pytest.raises(AnsibleFilterError) as err:
        F.proxy_sites(sites, instances, 80)
    assert message in str(err.value)
    assert 'pw' not in str(err.value).replace('proxy', '')


@pytest.mark.parametrize('listen', [['80'], 1.5, None])
def test_a_bad_default_listen_is_refused(listen):
    with pytest.raises(AnsibleFilterError, match='proxy_listen: listen='):
        F.proxy_sites([], INSTANCES, listen)


# ----------------------------------------------------------------------------------------------- proxy_failover_problems

def test_the_defaults_have_no_problem():
    assert F.proxy_failover_problems(DEFAULTS) == []


@pytest.mark.parametrize('name, low, high', [(name, low, high) for name, (low, high) in F.FAILOVER_LIMITS.items()])
def test_the_limits_themselves_are_accepted_and_one_beyond_is_not(name, low, high):
    base = dict(DEFAULTS, proxy_connect_timeout=1, proxy_next_upstream_timeout=600)
    if name == 'proxy_connect_timeout':
        base['proxy_next_upstream_timeout'] = 600
    if name == 'proxy_next_upstream_timeout':
        base['proxy_connect_timeout'] = 1 if low > 1 else 1
    for value in (low, high):
        settings = dict(base, **{name: value})
        if settings['proxy_next_upstream_timeout'] > settings['proxy_connect_timeout']:
            assert F.proxy_failover_problems(settings) == [], (name, value)
    assert F.proxy_failover_problems(dict(base, **{name: low - 1})) == ['%s=%d is not a whole number from %d to %d' % (name, low - 1, low, high)]
    assert F.proxy_failover_problems(dict(base, **{name: high + 1})) == ['%s=%d is not a whole number from %d to %d' % (name, high + 1, low, high)]


@pytest.mark.parametrize('value, shown', [
    ('soon', '"soon"'), ('', '""'), (True, 'true'), (2.0, '2.0'), (None, 'null'), ('-1', '"-1"'), (' 2', '" 2"'),
    ('2\n', '"2\\n"'), ([2], '[2]'),
])
def test_anything_but_a_whole_number_is_a_problem(value, shown):
    got = F.proxy_failover_problems(dict(DEFAULTS, proxy_connect_timeout=value))
    assert got == ['proxy_connect_timeout=%s is not a whole number from 1 to 60' % shown]


def test_digits_as_a_string_are_a_whole_number():
    assert F.proxy_failover_problems(dict(DEFAULTS, proxy_connect_timeout='3', proxy_read_timeout='0060')) == []


@pytest.mark.parametrize('timeout, connect', [(2, 2), (2, 3), ('5', '30')])
def test_the_retry_window_must_be_longer_than_the_connect_timeout(timeout, connect):
    got = F.proxy_failover_problems(dict(DEFAULTS, proxy_next_upstream_timeout=timeout, proxy_connect_timeout=connect))
    assert got == ['proxy_next_upstream_timeout=%s must be longer than proxy_connect_timeout=%s, else a backend that does not '
                   'answer is never followed by a retry' % (timeout, connect)]


def test_the_window_is_not_compared_while_a_value_is_out_of_range():
    got = F.proxy_failover_problems(dict(DEFAULTS, proxy_connect_timeout=61, proxy_next_upstream_timeout=2, proxy_max_fails=0))
    assert got == ['proxy_connect_timeout=61 is not a whole number from 1 to 60', 'proxy_max_fails=0 is not a whole number from 1 to 100']


def test_a_missing_setting_is_a_problem():
    settings = dict(DEFAULTS)
    del settings['proxy_fail_timeout']
    assert F.proxy_failover_problems(settings) == ['proxy_fail_timeout is not set']


@pytest.mark.parametrize('settings, message', [
    (dict(DEFAULTS, proxy_connect_timout=2), 'proxy_failover_problems knows no setting proxy_connect_timout'),
    ([2], 'needs a dict of the proxy failover settings, got list'),
])
def test_a_wrong_call_is_refused(settings, message):
    with pytest.raises(AnsibleFilterError, match=message):
        F.proxy_failover_problems(settings)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(F.FAILOVER_LIMITS)),
                       st.one_of(st.integers(-5, 5000), st.text(max_size=6), st.floats(), st.booleans(), st.none())))
def test_any_values_give_sentences_that_name_each_bad_setting(settings):
    full = dict(DEFAULTS, **settings)
    problems = F.proxy_failover_problems(full)
    assert all(isinstance(p, str) and p.startswith('proxy_') for p in problems)
    for name, (low, high) in F.FAILOVER_LIMITS.items():
        value = full[name]
        good = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        if not good and not isinstance(value, str):
            assert any(p.startswith(name + '=') for p in problems), (name, value, problems)
