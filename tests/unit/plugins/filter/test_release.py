# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters anqicms_release, anqicms_release_problems, anqicms_download_problems and anqicms_archive_problems: the app
role's release decisions."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from ansible.errors import AnsibleFilterError

from ansible_collections.opsguard.anqicms.plugins.filter import release as F

FILTER_DIR = pathlib.Path(F.__file__).parent
SHA = 'AB' * 32
OTHER = 'cd' * 32
URL = 'https://www.anqicms.com/downloads/anqicms-linux-amd64-v3.5.8.zip'
CACHE = '/var/cache/opsguard-anqicms'


def stat(exists=True, checksum=OTHER):
    """A registered ansible.builtin.stat result."""
    return {'changed': False, 'stat': {'exists': exists, 'checksum': checksum} if exists else {'exists': False}}


def plan(**kw):
    args = dict(url=URL, sha256=SHA, version='3.5.8', cache_dir=CACHE)
    args.update(kw)
    return F.anqicms_release(kw.pop('src', ''), **{k: v for k, v in args.items() if k != 'src'})


# ---------------------------------------------------------------- anqicms_release: which source wins, cache names

def test_a_url_release_is_keyed_by_its_sha256():
    got = plan()
    assert got == {
        'source': 'url', 'location': URL, 'sha256': SHA.lower(), 'expected_sha256': SHA.lower(), 'cache_dir': CACHE,
        'archive': CACHE + '/anqicms-linux-amd64-v3.5.8.zip.' + 'ab' * 8,
        'tree': CACHE + '/v3.5.8-' + 'ab' * 8,
        'staging': CACHE + '/.v3.5.8-' + 'ab' * 8 + '.partial',
    }


def test_a_local_archive_wins_and_is_keyed_by_the_measured_sha256():
    got = F.anqicms_release('/srv/rel/anqicms-linux-amd64-v3.5.8.zip', URL, '', '3.5.8', CACHE, stat(checksum=OTHER.upper()))
    assert got['source'] == 'src' and got['location'] == '/srv/rel/anqicms-linux-amd64-v3.5.8.zip'
    assert got['sha256'] == OTHER and got['expected_sha256'] == ''
    assert got['archive'] == CACHE + '/anqicms-linux-amd64-v3.5.8.zip.' + 'cd' * 8


def test_a_local_archive_with_a_matching_sha256():
    got = F.anqicms_release('/srv/a.zip', URL, OTHER.upper(), '3.5.8', CACHE, stat())
    assert got['sha256'] == got['expected_sha256'] == OTHER


def test_a_local_archive_needs_its_measured_sha256():
    with pytest.raises(AnsibleFilterError, match='sha256 of release archive /srv/a.zip on the controller is not known'):
        F.anqicms_release('/srv/a.zip', URL, '', '3.5.8', CACHE)


@pytest.mark.parametrize('url, archive_name', [
    ('http://control:8080/downloads/anqicms-linux-amd64-v3.5.8.zip?token=s3cret#x', 'anqicms-linux-amd64-v3.5.8.zip'),
    ('https://mirror.example/a%20b/anqicms%20linux.zip', 'anqicms_linux.zip'),
    ('https://mirror.example/.hidden.zip', '_hidden.zip'),
    ('file:///srv/releases/anqicms.zip', 'anqicms.zip'),
])
def test_the_archive_name_comes_from_the_url_path_and_is_safe(url, archive_name):
    assert plan(url=url)['archive'] == '%s/%s.%s' % (CACHE, archive_name, 'ab' * 8)


def test_user_password_and_query_never_show_in_the_location():
    got = plan(url='https://bob:hunter2@mirror.example:8443/dl/anqicms.zip?token=s3cret')
    assert got['location'] == 'https://mirror.example:8443/dl/anqicms.zip?<hidden>'
    assert 'hunter2' not in str(got) and 's3cret' not in str(got)


def test_the_cache_dir_is_normalised():
    assert plan(cache_dir='/var/cache/x/')['archive'].startswith('/var/cache/x/anqicms-linux')


@pytest.mark.parametrize('cache_dir', ['relative/cache', '/', '//', '/var/../etc', '', None])
def test_a_cache_dir_that_is_not_an_absolute_directory_is_refused(cache_dir):
    with pytest.raises(AnsibleFilterError, match='app_cache_dir=.* must be an absolute directory'):
        plan(cache_dir=cache_dir)


def test_refused_settings_fail_with_the_problem_sentences():
    with pytest.raises(AnsibleFilterError) as err:
        plan(sha256='', version='../../etc')
    assert 'app_release_version=\'../../etc\' must be' in str(err.value)
    assert 'a release URL needs its sha256' in str(err.value)


# ---------------------------------------------------------------- anqicms_release_problems

def test_good_settings_have_no_problem():
    assert F.anqicms_release_problems('', URL, SHA, '3.5.8') == []
    assert F.anqicms_release_problems('/srv/a.zip', '', '', '3.5.8', stat()) == []
    assert F.anqicms_release_problems('/srv/a.zip', '', '', '3.5.8') == []
    assert F.anqicms_release_problems('', URL, ' %s\n' % SHA, '3.5.8-rc1+b2') == []


NOT_STRINGS = ['app_release_src must be a string, got list.', 'app_release_version must be a string, got float.']


@pytest.mark.parametrize('src, url, sha, version, src_stat, expected', [
    ('', URL, '', '3.5.8', None, ['a release URL needs its sha256 (%s). Fix: set app_release_sha256' % URL]),
    ('', URL, 'abc', '3.5.8', None, ["app_release_sha256='abc' is not a sha256 (64 hexadecimal digits). Fix:"]),
    ('', URL, 'g' * 64, '3.5.8', None, ["app_release_sha256='gggg"]),
    ('', '', '', '3.5.8', None, ['app_release_url and app_release_src are both empty. Fix:']),
    ('', 'www.anqicms.com/downloads/a.zip', SHA, '3.5.8', None,
     ["app_release_url 'www.anqicms.com/downloads/a.zip' is not an http, https, ftp or file URL"]),
    ('', 'ssh://host/a.zip', SHA, '3.5.8', None, ["app_release_url 'ssh://host/a.zip' is not an http"]),
    ('', 'http:///a.zip', SHA, '3.5.8', None, ["app_release_url 'http:///a.zip' is not an http"]),
    ('', 'https://www.anqicms.com/downloads/', SHA, '3.5.8', None,
     ['app_release_url https://www.anqicms.com/downloads/ does not end in the file name of the archive']),
    ('', URL, SHA, '', None, ["app_release_version='' must be"]),
    ('', URL, SHA, '3.5/../../x', None, ["app_release_version='3.5/../../x' must be"]),
    ('', URL, SHA, '.hidden', None, ["app_release_version='.hidden' must be"]),
    ('/srv/a.zip', '', '', '3.5.8', stat(exists=False),
     ['release archive /srv/a.zip on the controller does not exist. Fix:']),
    ('/srv/a.zip', '', SHA, '3.5.8', stat(),
     ['release archive /srv/a.zip on the controller has sha256 %s, expected %s (app_release_sha256). Fix:' % (OTHER, SHA.lower())]),
    ('/srv/a.zip', URL, 'short', '3.5.8', stat(), ["app_release_sha256='short' is not a sha256"]),
    (['/srv/a.zip'], URL, SHA, 3.58, None, NOT_STRINGS),
])
def test_each_problem_is_a_sentence_with_its_fix(src, url, sha, version, src_stat, expected):
    got = F.anqicms_release_problems(src, url, sha, version, src_stat)
    assert len(got) >= len(expected), got
    for fragment in expected:
        assert any(fragment in sentence for sentence in got), (fragment, got)


def test_a_local_archive_wins_so_the_url_settings_are_not_checked():
    assert F.anqicms_release_problems('/srv/a.zip', 'not a url', '', '3.5.8', stat()) == []


def test_a_skipped_stat_does_not_check_the_local_archive():
    assert F.anqicms_release_problems('/srv/a.zip', '', SHA, '3.5.8', {'skipped': True, 'changed': False}) == []


def test_the_url_is_masked_in_problems():
    got = F.anqicms_release_problems('', 'https://bob:hunter2@mirror.example/dl/?t=s3cret', '', '3.5.8')
    assert got and not any('hunter2' in s or 's3cret' in s for s in got)


# ---------------------------------------------------------------- anqicms_download_problems

RELEASE = {'location': 'http://control:8080/downloads/anqicms-linux-amd64-v3.5.9.zip', 'sha256': SHA.lower(),
           'cache_dir': CACHE}


def test_a_download_that_did_not_fail_has_no_problem():
    assert F.anqicms_download_problems({'changed': False, 'msg': 'file already exists'}, RELEASE) == []


def test_a_checksum_mismatch_names_the_url_and_both_checksums():
    result = {'failed': True, 'msg': 'The checksum for /root/.ansible/tmp/ansible-moduletmp-1/tmpab12 did not match %s; it was %s.'
              % (SHA.lower(), OTHER), 'url': RELEASE['location'], 'dest': CACHE + '/x'}
    got = F.anqicms_download_problems(result, RELEASE)
    assert got == ['release archive %s has sha256 %s, expected %s (app_release_sha256); the download was deleted and nothing was '
                   'kept in %s. Fix: compare app_release_sha256 with the checksum the vendor publishes for that file; if they '
                   'agree, the file was altered on the way (mirror, proxy): do not adopt the sha256 above unchecked.'
                   % (RELEASE['location'], OTHER, SHA.lower(), CACHE)]
    assert 'ansible-moduletmp' not in got[0]


def test_an_http_error_names_the_url_and_the_status():
    result = {'failed': True, 'msg': 'Request failed', 'status_code': 404, 'response': 'HTTP Error 404: File not found'}
    got = F.anqicms_download_problems(result, RELEASE)
    assert got == ['release archive %s could not be downloaded: the server answered HTTP 404 (HTTP Error 404: File not found). '
                   "Fix: check app_release_url (version and file name as on the vendor's download page) and that the host "
                   'can reach it.' % RELEASE['location']]


@pytest.mark.parametrize('result, fragment', [
    ({'failed': True, 'msg': 'Request failed: <urlopen error [Errno 111] Connection refused>', 'status_code': -1},
     'could not be downloaded: Request failed: <urlopen error [Errno 111] Connection refused>. Fix: check app_release_url'),
    ({'failed': True, 'msg': "Incomplete read, (rsp.length=0, cl=10, st.st_size=5) failed to read remaining 5 bytes"},
     'could not be downloaded: Incomplete read'),
    ({'failed': True}, 'could not be downloaded: get_url failed without a message.'),
])
def test_other_download_failures_quote_get_url(result, fragment):
    got = F.anqicms_download_problems(result, RELEASE)
    assert len(got) == 1 and fragment in got[0] and RELEASE['location'] in got[0]


@pytest.mark.parametrize('result, release, message', [
    ('failed', RELEASE, 'the input must be a registered get_url result, got str'),
    ({'failed': True}, {'location': 'x'}, 'release must be the result of opsguard.anqicms.anqicms_release'),
])
def test_download_problems_refuse_what_is_not_a_result(result, release, message):
    with pytest.raises(AnsibleFilterError, match=message):
        F.anqicms_download_problems(result, release)


# ---------------------------------------------------------------- anqicms_archive_problems

FLAT = ['anqicms', 'cache/', 'locales/', 'locales/en.yml', 'public/', 'public/static/', 'source/cwebp_linux_amd64',
        'template/', 'template/default/index.html', 'start.sh', 'stop.sh']


def listing(rc=0, lines=(), stderr=''):
    return {'changed': False, 'rc': rc, 'stdout': '\n'.join(lines), 'stdout_lines': list(lines), 'stderr': stderr}


def test_a_flat_release_has_no_problem():
    assert F.anqicms_archive_problems(listing(lines=FLAT), RELEASE) == []


def test_a_skipped_listing_has_no_problem():
    assert F.anqicms_archive_problems({'skipped': True, 'changed': False}, RELEASE) == []


def test_a_file_unzip_cannot_read_is_not_a_zip():
    result = listing(rc=9, lines=['[/var/cache/x.zip]', '  End-of-central-directory signature not found.  Either this file is not'],
                     stderr='unzip:  cannot find zipfile directory in one of x.zip')
    got = F.anqicms_archive_problems(result, RELEASE)
    assert got == ['release archive %s is not a zip archive unzip can read (exit status 9: unzip: cannot find zipfile directory '
                   'in one of x.zip). %s' % (RELEASE['location'], F.FIX_FLAT)]


def test_an_empty_zip_is_refused():
    got = F.anqicms_archive_problems(listing(rc=1, lines=['Empty zipfile.']), RELEASE)
    assert len(got) == 1 and 'exit status 1: Empty zipfile.' in got[0]


def test_a_release_wrapped_in_a_directory_names_where_the_binary_is():
    got = F.anqicms_archive_problems(listing(lines=['anqicms-3.5.8/'] + ['anqicms-3.5.8/' + e for e in FLAT]), RELEASE)
    assert got == ['release archive %s has no anqicms binary at its top level (12 entries; it has anqicms-3.5.8/anqicms: the '
                   'release is wrapped in a directory). %s' % (RELEASE['location'], F.FIX_FLAT)]


def test_a_directory_named_anqicms_is_not_the_binary():
    got = F.anqicms_archive_problems(listing(lines=['anqicms/', 'anqicms/x', 'locales/']), RELEASE)
    assert len(got) == 1 and 'has no anqicms binary at its top level (3 entries)' in got[0]


def test_a_release_without_locales_is_refused():
    got = F.anqicms_archive_problems(listing(lines=[e for e in FLAT if not e.startswith('locales')]), RELEASE)
    assert len(got) == 1 and 'has no locales/ directory at its top level; AnQiCMS exits at start without it' in got[0]


@pytest.mark.parametrize('entry', ['/etc/cron.d/x', '../x', 'template/../../x', 'a\\..\\..\\b'])
def test_entries_outside_the_tree_are_refused(entry):
    got = F.anqicms_archive_problems(listing(lines=FLAT + [entry]), RELEASE)
    assert len(got) == 1 and 'holds entries outside its top directory (%r)' % entry in got[0]


def test_the_listing_may_come_as_text_only():
    assert F.anqicms_archive_problems({'rc': 0, 'stdout': '\n'.join(FLAT)}, RELEASE) == []


@pytest.mark.parametrize('result, release, message', [
    (['anqicms'], RELEASE, 'the input must be a registered `unzip -Z1` result, got list'),
    (listing(lines=FLAT), None, 'release must be the result of opsguard.anqicms.anqicms_release, got NoneType'),
])
def test_archive_problems_refuse_what_is_not_a_result(result, release, message):
    with pytest.raises(AnsibleFilterError, match=message):
        F.anqicms_archive_problems(result, release)


# ---------------------------------------------------------------- plugin wiring and documentation

def test_every_filter_is_registered_and_documented():
    filters = F.FilterModule().filters()
    assert set(filters) == {'anqicms_release', 'anqicms_release_problems', 'anqicms_download_problems', 'anqicms_archive_problems'}
    for name in filters:
        doc = yaml.safe_load((FILTER_DIR / (name + '.yml')).read_text(encoding='utf-8'))
        assert doc['DOCUMENTATION']['name'] == name
        assert doc['EXAMPLES'] and doc['RETURN']['_value']
