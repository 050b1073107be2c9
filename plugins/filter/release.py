# -*- coding: utf-8 -*-
# Copyright: opsguard maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The app role's release decisions: which source wins, where the archive and its unpacked tree live in the cache, and
why a release setting, a download or an archive is refused.

Documentation: one ``<filter name>.yml`` per filter next to this file (anqicms_release, anqicms_release_problems,
anqicms_download_problems, anqicms_archive_problems).
"""

from __future__ import annotations

import posixpath
import re
import typing as t
import urllib.parse
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

SHA256_RE = re.compile(r'^[0-9a-fA-F]{64}$')
VERSION_RE = re.compile(r'^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$')
UNSAFE_NAME_CHARS = re.compile(r'[^0-9A-Za-z._+-]')
SCHEMES = ('http', 'https', 'ftp', 'file')
CHECKSUM_MISMATCH_RE = re.compile(r'did not match ([0-9a-fA-F]+); it was ([0-9a-fA-F]+)')
SHORT = 16  # hex digits of the sha256 in cache names
MAX_SHOWN = 200

FIX_FLAT = ('Fix: use the flat Linux release archive the vendor publishes (anqicms-linux-amd64-vX.Y.Z.zip, with anqicms and '
            'locales/ at its top level) and its sha256.')


def _text(value: t.Any, variable: str, problems: list[str]) -> str:
    """A string setting; None is empty; anything else adds a problem and counts as empty."""
    if value is None:
        return ''
    if isinstance(value, str):
        return value
    problems.append('%s must be a string, got %s.' % (variable, type(value).__name__))
    return ''


def _shown(value: str) -> str:
    """A value as it appears in a sentence: repr, cut to MAX_SHOWN characters."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + '...'


def masked_url(url: str) -> str:
    """The URL without user and password, and with its query string hidden (it may carry a token)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ''
        port = parts.port
    except ValueError:
        return '<an unparsable URL>'
    netloc = host if ':' not in host else '[%s]' % host
    if port is not None:
        netloc += ':%d' % port
    query = '<hidden>' if parts.query else ''
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ''))


def url_file_name(url: str) -> str:
    """The last segment of the URL's path, percent-decoded ('' when the path ends in '/')."""
    try:
        path = urllib.parse.urlsplit(url).path
    except ValueError:
        return ''
    return posixpath.basename(urllib.parse.unquote(path))


def _cache_name(name: str) -> str:
    """A file name safe in the cache: characters other than letters, digits, '.', '_', '+' and '-' become '_'."""
    safe = UNSAFE_NAME_CHARS.sub('_', name)[:128]
    return ('_' + safe[1:]) if safe.startswith('.') else safe


def _src_facts(src_stat: t.Any) -> tuple[bool | None, str]:
    """(exists, sha256) of a registered ansible.builtin.stat result or its inner 'stat'; (None, '') when not known."""
    if src_stat is None or not isinstance(src_stat, Mapping) or src_stat.get('skipped'):
        return None, ''
    inner = src_stat.get('stat', src_stat)
    if not isinstance(inner, Mapping) or 'exists' not in inner:
        return None, ''
    checksum = inner.get('checksum')
    return bool(inner.get('exists')), checksum.lower() if isinstance(checksum, str) else ''


def anqicms_release_problems(src: t.Any, url: t.Any = '', sha256: t.Any = '', version: t.Any = '3.5.8',
                             src_stat: t.Any = None) -> list[str]:
    """Sentences naming what is wrong with the release settings (empty when they are usable).

    ``src_stat`` is the result of ansible.builtin.stat (sha256 checksum) on the controller's ``app_release_src``; without
    it, the local archive itself is not checked.
    """
    problems: list[str] = []
    src_text = _text(src, 'app_release_src', problems)
    url_text = _text(url, 'app_release_url', problems)
    sha_text = _text(sha256, 'app_release_sha256', problems).strip()
    version_text = _text(version, 'app_release_version', problems)

    if not VERSION_RE.match(version_text):
        problems.append('app_release_version=%s must be 1 to 64 letters, digits, ".", "_", "+" or "-", starting with a letter or '
                        'digit (it names the unpacked tree in app_cache_dir). Fix: set it to the release version, such as '
                        '3.5.8.' % _shown(version_text))
    sha_ok = bool(SHA256_RE.match(sha_text))
    if sha_text and not sha_ok:
        problems.append('app_release_sha256=%s is not a sha256 (64 hexadecimal digits). Fix: copy the sha256 the vendor '
                        'publishes for the archive.' % _shown(sha_text))
    if src_text:
        exists, actual = _src_facts(src_stat)
        if exists is False:
            problems.append('release archive %s on the controller does not exist. Fix: point app_release_src at the release '
                            'zip, or leave it empty to download app_release_url.' % src_text)
        elif exists and sha_ok and actual and actual != sha_text.lower():
            problems.append('release archive %s on the controller has sha256 %s, expected %s (app_release_sha256). Fix: point '
                            'app_release_src at the right archive or correct app_release_sha256.' % (src_text, actual, sha_text.lower()))
        return problems

    shown = masked_url(url_text)
    try:
        parts = urllib.parse.urlsplit(url_text)
    except ValueError:
        parts = None
    if not url_text:
        problems.append('app_release_url and app_release_src are both empty. Fix: set app_release_url (with '
                        'app_release_sha256) or app_release_src.')
    elif parts is None or parts.scheme.lower() not in SCHEMES or (parts.scheme.lower() != 'file' and not parts.netloc):
        problems.append('app_release_url %s is not an http, https, ftp or file URL. Fix: set it to the download address of the '
                        'release zip.' % _shown(shown))
    elif not url_file_name(url_text) or url_file_name(url_text) in ('.', '..'):
        problems.append('app_release_url %s does not end in the file name of the archive. Fix: set it to the address of the '
                        'zip itself, such as https://www.anqicms.com/downloads/anqicms-linux-amd64-v3.5.8.zip.' % shown)
    if url_text and not sha_text:
        problems.append('a release URL needs its sha256 (%s). Fix: set app_release_sha256 to the 64-hex-digit sha256 the '
                        'vendor publishes for that archive, or app_release_src to a local archive.' % shown)
    return problems


def anqicms_release(src: t.Any, url: t.Any = '', sha256: t.Any = '', version: t.Any = '3.5.8',
                    cache_dir: t.Any = '/var/cache/opsguard-anqicms', src_stat: t.Any = None) -> dict[str, str]:
    """Where the release comes from and where it lives on the host, keyed by its sha256.

    A local archive (``src``) wins over the URL; its sha256 is the one measured on the controller (``src_stat``).
    """
    problems = anqicms_release_problems(src, url, sha256, version, src_stat)
    cache = cache_dir if isinstance(cache_dir, str) else ''
    if not cache.startswith('/') or '..' in cache.split('/') or cache.strip('/') == '':
        problems.append('app_cache_dir=%s must be an absolute directory other than / without "..". Fix: leave it at '
                        '/var/cache/opsguard-anqicms or set another absolute path.' % _shown(str(cache_dir)))
    src_text = src if isinstance(src, str) else ''
    exists, measured = _src_facts(src_stat)
    if src_text and not problems and not (exists and SHA256_RE.match(measured)):
        problems.append('the sha256 of release archive %s on the controller is not known: pass its ansible.builtin.stat '
                        'result (checksum_algorithm sha256) as src_stat.' % src_text)
    if problems:
        raise AnsibleFilterError(' '.join(problems))

    cache = posixpath.normpath(cache)
    expected = sha256.strip().lower() if isinstance(sha256, str) else ''
    if src_text:
        source, location, name, sha = 'src', src_text, posixpath.basename(src_text.rstrip('/')), measured
    else:
        source, location, name, sha = 'url', masked_url(url), url_file_name(url), expected
    short = sha[:SHORT]
    return {
        'source': source,
        'location': location,
        'sha256': sha,
        'expected_sha256': expected,
        'cache_dir': cache,
        'archive': '%s/%s.%s' % (cache, _cache_name(name), short),
        'tree': '%s/v%s-%s' % (cache, version, short),
        'staging': '%s/.v%s-%s.partial' % (cache, version, short),
    }


def _release(release: t.Any, name: str) -> Mapping:
    if not isinstance(release, Mapping) or not all(k in release for k in ('location', 'sha256', 'cache_dir')):
        raise AnsibleFilterError('%s: release must be the result of opsguard.anqicms.anqicms_release, got %s'
                                 % (name, type(release).__name__))
    return release


def _first_line(*texts: t.Any) -> str:
    for text in texts:
        for line in str(text or '').splitlines():
            line = ' '.join(line.split())
            if line and not (line.startswith('[') and line.endswith(']')):
                return line[:MAX_SHOWN]
    return ''


def anqicms_download_problems(result: t.Any, release: t.Any) -> list[str]:
    """Why ansible.builtin.get_url did not deliver the release archive, as sentences (empty when it did)."""
    release = _release(release, 'anqicms_download_problems')
    if not isinstance(result, Mapping):
        raise AnsibleFilterError('anqicms_download_problems: the input must be a registered get_url result, got %s'
                                 % type(result).__name__)
    if not result.get('failed'):
        return []
    location, cache = release['location'], release['cache_dir']
    msg = str(result.get('msg') or '')
    mismatch = CHECKSUM_MISMATCH_RE.search(msg)
    if mismatch:
        return ['release archive %s has sha256 %s, expected %s (app_release_sha256); the download was deleted and nothing '
                'was kept in %s. Fix: compare app_release_sha256 with the checksum the vendor publishes for that file; if they '
                'agree, the file was altered on the way (mirror, proxy): do not adopt the sha256 above unchecked.'
                % (location, mismatch.group(2).lower(), mismatch.group(1).lower(), cache)]
    status = result.get('status_code')
    if isinstance(status, int) and not isinstance(status, bool) and status >= 300:
        answer = ' '.join(str(result.get('response') or '').split())[:MAX_SHOWN]
        return ['release archive %s could not be downloaded: the server answered HTTP %d%s. Fix: check app_release_url '
                '(version and file name as on the vendor\'s download page) and that the host can reach it.'
                % (location, status, ' (%s)' % answer if answer else '')]
    return ['release archive %s could not be downloaded: %s. Fix: check app_release_url and that the host can reach it '
            '(name resolution, proxy, firewall).' % (location, _first_line(msg) or 'get_url failed without a message')]


def anqicms_archive_problems(listing: t.Any, release: t.Any) -> list[str]:
    """Why an archive is not a flat AnQiCMS release, from the result of ``unzip -Z1 <archive>`` (empty when it is)."""
    release = _release(release, 'anqicms_archive_problems')
    if not isinstance(listing, Mapping):
        raise AnsibleFilterError('anqicms_archive_problems: the input must be a registered `unzip -Z1` result, got %s'
                                 % type(listing).__name__)
    if listing.get('skipped'):
        return []
    location = release['location']
    rc = listing.get('rc')
    if rc != 0:
        detail = _first_line(listing.get('stderr'), listing.get('stdout'), listing.get('msg'))
        return ['release archive %s is not a zip archive unzip can read (exit status %s%s). %s'
                % (location, rc, ': ' + detail if detail else '', FIX_FLAT)]
    lines = listing.get('stdout_lines')
    if not isinstance(lines, list):
        lines = str(listing.get('stdout') or '').splitlines()
    entries = [str(line).rstrip('\r') for line in lines if str(line).strip()]
    problems: list[str] = []
    outside = [e for e in entries if e.startswith('/') or '..' in e.replace('\\', '/').split('/')]
    if outside:
        problems.append('release archive %s holds entries outside its top directory (%s). %s'
                        % (location, ', '.join(_shown(e) for e in outside[:3]), FIX_FLAT))
    if 'anqicms' not in entries:
        nested = [e for e in entries if e.endswith('/anqicms')]
        where = ('; it has %s: the release is wrapped in a directory' % nested[0]) if nested else ''
        problems.append('release archive %s has no anqicms binary at its top level (%d entries%s). %s'
                        % (location, len(entries), where, FIX_FLAT))
    elif not any(e.startswith('locales/') for e in entries):
        problems.append('release archive %s has no locales/ directory at its top level; AnQiCMS exits at start without '
                        'it. %s' % (location, FIX_FLAT))
    return problems


class FilterModule:
    """AnQiCMS release archive decisions."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {
            'anqicms_release': anqicms_release,
            'anqicms_release_problems': anqicms_release_problems,
            'anqicms_download_problems': anqicms_download_problems,
            'anqicms_archive_problems': anqicms_archive_problems,
        }
