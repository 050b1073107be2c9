# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import json
import os

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_partials import (
    claim_partial,
    clean_stale_partials,
    release_partial,
)


def test_claimed_partial_is_locked_and_recorded_until_released(tmp_path):
    inst = tmp_path / 'shop'
    inst.mkdir()
    fd = claim_partial(str(inst / '.partial-20260101T000000000000Z'))
    try:
        record = json.loads((inst / '.partial-20260101T000000000000Z' / '.owner').read_text())
        assert record['pid'] == os.getpid() and record['start'] > 0
        assert oct((inst / '.partial-20260101T000000000000Z').stat().st_mode & 0o777) == '0o700'
        assert clean_stale_partials(str(inst))['left'][0]['reason'] == 'a backup is still writing it (it holds its lock)'
        release_partial(fd)
        assert not (inst / '.partial-20260101T000000000000Z' / '.owner').exists()
    finally:
        os.close(fd)
    # Lock gone, no record (released before the manifest is written): never proven dead, left alone.
    assert 'no owner record' in clean_stale_partials(str(inst))['left'][0]['reason']
    assert clean_stale_partials(str(tmp_path / 'missing')) == {'removed': [], 'left': []}
