"""The ``url`` input type of playbook_input_problems / playbook_inputs (opsguard_notify_url): an http(s) URL that may
carry a token, so a refusal names the variable and never shows the value."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from ansible_collections.opsguard.anqicms.plugins.filter.playbook_inputs import playbook_input_problems, playbook_inputs

SPEC = {'opsguard_notify_url': {'type': 'url', 'allow_empty': True, 'secret': True, 'default': ''}}
TOKEN = 'Zx9-token-41'


@pytest.mark.parametrize('url', ['https://hooks.example.com/services/' + TOKEN, 'http://10.0.0.1:9093/api?token=' + TOKEN,
                                 'http://[fd00::1]:8080/' + TOKEN])
def test_a_webhook_url_is_accepted_as_given(url):
    assert playbook_input_problems({'opsguard_notify_url': url}, SPEC) == []
    assert playbook_inputs({'opsguard_notify_url': url}, SPEC) == {'opsguard_notify_url': url}


def test_empty_and_absent_mean_no_webhook():
    assert playbook_inputs({'opsguard_notify_url': ''}, SPEC) == {'opsguard_notify_url': ''}
    assert playbook_inputs({}, SPEC) == {'opsguard_notify_url': ''}
    strict = {'opsguard_notify_url': {'type': 'url'}}
    assert playbook_input_problems({'opsguard_notify_url': ''}, strict) == [
        'opsguard_notify_url must be a non-empty http:// or https:// URL (value not shown: it may carry a token).']


@pytest.mark.parametrize('url, words', [
    ('ftp://hooks/' + TOKEN, 'must start with http:// or https://'),
    ('https://ops:' + TOKEN + '@hooks/', 'user:password@'),
    ('https://hooks/a b' + TOKEN, 'without spaces'),
    ('https://hooks:123456/' + TOKEN, 'valid host and port'),
    ('https:///' + TOKEN, 'has no host'),
    (['https://hooks/' + TOKEN], 'non-empty http:// or https:// URL'),
    (42, 'non-empty http:// or https:// URL'),
])
def test_a_bad_url_is_refused_naming_the_variable_without_the_value(url, words):
    [problem] = playbook_input_problems({'opsguard_notify_url': url}, SPEC)
    assert problem.startswith('opsguard_notify_url ') and words in problem, problem
    assert TOKEN not in problem


@given(st.sampled_from(['', 'http://', 'https://h/', 'ftp://', 'http://u:p@']), st.text(max_size=120))
def test_any_text_is_accepted_or_refused_without_being_shown(prefix, text):
    value = prefix + text + TOKEN
    problems = playbook_input_problems({'opsguard_notify_url': value}, SPEC)
    assert len(problems) <= 1
    if problems:
        assert problems[0].startswith('opsguard_notify_url ') and TOKEN not in problems[0]
    else:
        assert value.lower().startswith(('http://', 'https://'))
