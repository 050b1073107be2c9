# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention of AnQiCMS backups: which backups of an instance stay, which expire, which are damaged (never deleted)."""

from __future__ import annotations

import datetime
import math
import os
import shutil
import time

from ansible_collections.opsguard.anqicms.plugins.module_utils.backup_store import BackupError, id_time, list_backups, verify_backup


# Bounds of the retention options: any value outside is refused before any work.
MAX_KEEP = 100000
MAX_KEEP_DAYS = 36500.0


def retention_problems(keep, keep_days) -> list:
    """Why ``keep``/``keep_days`` are unusable (empty list when they are fine). NaN, infinities, bools refused."""
    problems = []
    if keep is not None:
        if isinstance(keep, bool) or not isinstance(keep, int):
            problems.append('keep must be an integer from 1 to %d; got %r' % (MAX_KEEP, keep))
        elif not 1 <= keep <= MAX_KEEP:
            problems.append('keep must be from 1 to %d (the newest good backup is never deleted); got %d' % (MAX_KEEP, keep))
    if keep_days is not None:
        if isinstance(keep_days, bool) or not isinstance(keep_days, (int, float)):
            problems.append('keep_days must be a number of days from 0 to %d; got %r' % (MAX_KEEP_DAYS, keep_days))
        elif not math.isfinite(keep_days):
            problems.append('keep_days must be a finite number of days from 0 to %d; got %s' % (MAX_KEEP_DAYS, keep_days))
        elif not 0 <= keep_days <= MAX_KEEP_DAYS:
            problems.append('keep_days must be from 0 to %d days; got %s' % (MAX_KEEP_DAYS, keep_days))
    return problems


def check_backup(entry: dict) -> str | None:
    """None when the backup ``entry`` passes verification with checksums, else what is wrong with it."""
    try:
        verify_backup(entry['path'], checksums=True)
    except BackupError as exc:
        return str(exc)
    except (OSError, ValueError, RecursionError) as exc:
        return 'backup %s cannot be read: %s' % (entry['path'], exc)
    return None


def plan_retention(good: list, keep: int | None, keep_days: float | None, now: datetime.datetime, check=check_backup) -> dict:
    """What retention does with ``good`` (complete backups of one instance, newest first).

    Walking from the newest: until ``keep`` backups (1 with only ``keep_days``) that pass ``check`` (sha256 of
    every artifact against the manifest) have been kept, each backup is checked; one that passes is kept and
    counted, one that fails is damaged. After that, a backup younger than ``keep_days`` is kept as it is (not
    counted, not checked); any other is checked: one that passes expires, one that fails is damaged. A damaged
    backup is never counted as kept and never deleted: it is reported. An entry with ``trusted`` (the backup this
    run just wrote and hashed) is not checked again.

    Returns {'kept', 'expired', 'damaged' (entries with 'error'), 'checked' (entries that were checked)}.
    """
    problems = retention_problems(keep, keep_days)
    if problems:
        raise BackupError('; '.join(problems))
    plan: dict = {'kept': [], 'expired': [], 'damaged': [], 'checked': []}
    if keep is None and keep_days is None:
        plan['kept'] = list(good)
        return plan
    need = keep if keep is not None else 1
    counted = 0
    for entry in good:
        young = keep_days is not None and (now - entry['time']).total_seconds() < keep_days * 86400.0
        if counted >= need and young:
            plan['kept'].append(entry)
            continue
        error = None
        if not entry.get('trusted'):
            plan['checked'].append(entry)
            error = check(entry)
        if error:
            plan['damaged'].append(dict(entry, error=error))
        elif counted < need:
            counted += 1
            plan['kept'].append(entry)
        else:
            plan['expired'].append(entry)
    return plan


def select_expired(good: list, keep: int | None, keep_days: float | None, now: datetime.datetime) -> list:
    """Backups (from ``good``, newest first) that the retention rules remove, every backup taken as intact.

    A backup stays when it is among the ``keep`` newest, or younger than ``keep_days``; with only
    one rule given, only that rule applies. The newest backup always stays.
    """
    return plan_retention(good, keep, keep_days, now, check=lambda entry: None)['expired']


def apply_retention(instance_dir: str, instance: str, keep: int | None, keep_days: float | None,
                    now: datetime.datetime, check_mode: bool = False, new_id: str | None = None) -> dict:
    """Delete expired, intact backups of ``instance``; never anything else. See :func:`plan_retention`.

    ``new_id`` is the backup this run writes: trusted (just hashed while written); in check mode, where it
    does not exist yet, it is counted as if it did, so check mode names exactly what the real run removes.
    Returns {'removed': ids, 'damaged': [{'id', 'error'}], 'checked': count, 'checked_bytes', 'check_seconds',
    'errors': [messages of removals that failed]}.
    """
    started = time.monotonic()
    listing = list_backups(instance_dir)
    good = [g for g in listing['good'] if g['instance'] == instance]
    if new_id is not None:
        if check_mode and not any(g['id'] == new_id for g in good):
            good.append({'id': new_id, 'path': os.path.join(instance_dir, new_id), 'time': id_time(new_id),
                         'instance': instance, 'complete': True})
            good.sort(key=lambda g: (g['time'], g['id']), reverse=True)
        good = [dict(g, trusted=True) if g['id'] == new_id else g for g in good]
    sizes: dict = {}

    def check(entry: dict) -> str | None:
        error = check_backup(entry)
        sizes[entry['id']] = _artifact_bytes(entry['path'])
        return error

    plan = plan_retention(good, keep, keep_days, now, check=check)
    removed, errors = [], []
    for entry in plan['expired']:
        if not check_mode:
            try:
                shutil.rmtree(entry['path'])
            except OSError as exc:
                errors.append('could not remove expired backup %s: %s' % (entry['path'], exc))
                continue
        removed.append(entry['id'])
    damaged = [{'id': d['id'], 'error': d['error']} for d in plan['damaged']]
    damaged += [{'id': b['id'], 'error': b['error']} for b in listing['bad'] if b.get('instance') in (None, instance)]
    damaged.sort(key=lambda d: d['id'], reverse=True)
    return {'removed': removed, 'damaged': damaged, 'checked': len(plan['checked']), 'checked_bytes': sum(sizes.values()),
            'check_seconds': round(time.monotonic() - started, 3), 'errors': errors}


def _artifact_bytes(directory: str) -> int:
    """Bytes of the regular files directly in ``directory`` (what a checksum check reads), 0 when unreadable."""
    total = 0
    try:
        with os.scandir(directory) as it:
            for item in it:
                if item.is_file(follow_symlinks=False):
                    total += item.stat(follow_symlinks=False).st_size
    except OSError:
        pass
    return total
