# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_options import (
    name_problems,
    path_problems,
)


@pytest.mark.parametrize('value, message', [
    ('', 'non-empty'), ('rel', 'absolute'), ('/a\x00b', 'NUL'), ('/\udcff\ud800', 'encoded'), ('/' + 'a' * 256, 'longer'),
    ('/' + 'a/' * 2100, 'longer'), (5, 'non-empty path'),
])
def test_path_problems(value, message):
    assert message in ' '.join(path_problems('dest', value))
    assert path_problems('dest', '/var/backups/anqicms') == [] and path_problems('dest', None) == []


@pytest.mark.parametrize('value, ok', [('shop', True), ('shop-2.b_c', True), ('é' * 127, True), ('é' * 128, False), ('', False),
                                       ('.', False), ('..', False), ('a/b', False), ('.x', False), ('a\tb', False),
                                       ('\ud800', False), (None, False)])
def test_name_problems(value, ok):
    assert (name_problems('instance', value) == []) == ok
