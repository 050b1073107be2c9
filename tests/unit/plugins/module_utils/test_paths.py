# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import os

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils import paths


class Refused(Exception):
    pass


def test_resolve_follows_links(tmp_path):
    (tmp_path / 'real').mkdir()
    (tmp_path / 'link').symlink_to(tmp_path / 'real')
    assert paths.resolve(str(tmp_path / 'link' / '..' / 'link')) == str(tmp_path / 'real')
    assert paths.resolve_problem(str(tmp_path / 'link')) is None


def test_an_unreadable_link_is_the_callers_error(tmp_path, monkeypatch):
    (tmp_path / 'link').symlink_to(tmp_path / 'real')

    def denied(path, *args, **kwargs):
        raise PermissionError(13, 'Permission denied', os.fspath(path))

    monkeypatch.setattr(os, 'readlink', denied)
    with pytest.raises(Refused, match=r"^exe '.*/link' cannot be resolved: .*Permission denied.*nothing was done"):
        paths.resolve(str(tmp_path / 'link'), 'exe', Refused)
    problem = paths.resolve_problem(str(tmp_path / 'link'), 'dest')
    assert problem.startswith('dest ') and 'Permission denied' in problem
    with pytest.raises(paths.UnresolvablePath):
        paths.resolve(str(tmp_path / 'link'))


def test_a_nul_byte_is_refused_not_raised():
    with pytest.raises(paths.UnresolvablePath, match='cannot be resolved'):
        paths.resolve('/tmp/a\x00b', 'path')
