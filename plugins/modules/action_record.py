#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: action_record
short_description: Write the record of one action (drain, undrain, start, ...) to the host's journal and a webhook
version_added: 0.1.0
description:
  - Writes one structured journald entry with C(SYSLOG_IDENTIFIER=opsguard) and the fields C(ACTION), C(INSTANCE),
    C(OUTCOME), C(REASON), C(HOST) and the upper-cased O(fields), the same record M(opsguard.anqicms.graceful_stop),
    M(opsguard.anqicms.restore) and M(opsguard.anqicms.backup) write for their own actions. Playbooks use it for what
    happens outside a module, such as a drain at nginx.
  - With O(notify_url), POSTs the record as Alertmanager-style JSON to that webhook (schema in docs/records.md of the
    collection); at most 3 tries within 5 seconds, certificates verified, no redirects followed.
  - A host without journald, or a webhook that is down, never fails the task; RV(recorded) says what happened.
  - Every option is checked before anything is sent; a bad value fails the task naming the option (never showing
    O(notify_url)).
author:
  - opsguard contributors (@opsguard)
extends_documentation_fragment:
  - opsguard.anqicms.attributes
attributes:
  check_mode:
    support: full
    details: Checks the options and records nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run writes a new record; it reports C(changed=false), since a record changes no managed state.
options:
  action:
    description:
      - What was done, for example V(drain), V(undrain), V(start), V(recycle).
      - A lowercase word of 1 to 32 letters, digits, C(_) or C(-), starting with a letter.
    type: str
    required: true
  instance:
    description:
      - The instance acted on (its name or install directory). 1 to 255 characters without control characters.
    type: str
    required: true
  outcome:
    description:
      - How it ended, for example V(drained), V(undrained), V(started), V(failed). Same form as O(action).
      - V(failed), V(rolled_back) and V(not_rolled_back) are written with priority C(err) (3), V(stopped_forced) and
        V(timed_out) with C(warning) (4), everything else with C(notice) (5).
    type: str
    required: true
  reason:
    description:
      - Why it was done, in words. At most 1024 characters.
    type: str
    default: ''
  fields:
    description:
      - More fields of the record, such as C(proxy), C(backend) or C(duration). Names are upper-cased in the journal
        (a letter, then letters, digits or C(_), at most 64 characters); the names of the record's own fields
        (C(action), C(instance), C(outcome), C(reason), C(host), C(message), C(message_id), C(priority),
        C(syslog_identifier)) are refused. At most 24 entries.
      - Numbers and strings are written as they are, lists and dictionaries as JSON; each value is cut to 2048 bytes.
    type: dict
    default: {}
  notify_url:
    description:
      - An C(http://) or C(https://) URL the record is POSTed to. It may carry a token in its path or query string; it
        is never shown in a message or a result (only C(scheme://host:port)). C(user:password@) in it is refused.
    type: str
notes:
  - The journal entry goes to journald's native socket (C(/run/systemd/journal/socket)) from the module itself, and
    no command runs, so neither the record nor O(notify_url) appears on a command line.
  - "Read the records with C(journalctl SYSLOG_IDENTIFIER=opsguard -o json) or C(journalctl MESSAGE_ID=8d5c1f3e2a7b4e06b3f1c9d0a4e6b217)."
seealso:
  - module: opsguard.anqicms.graceful_stop
  - name: Native journal protocol
    description: How journald's socket takes structured entries.
    link: https://systemd.io/JOURNAL_NATIVE_PROTOCOL/
'''

EXAMPLES = r'''
- name: Record the drain of www at nginx on proxy1
  opsguard.anqicms.action_record:
    action: drain
    instance: www
    outcome: drained
    reason: memory critical on node2
    fields:
      proxy: proxy1
      backend: 10.0.0.12:8001
    notify_url: "{{ opsguard_notify_url | default(omit) }}"
'''

RETURN = r'''
recorded:
  description: What was recorded and where.
  returned: always
  type: dict
  contains:
    journal:
      description: journald took the entry.
      type: bool
      returned: always
    journal_error:
      description: Why not (no journald on the host, check mode, ...).
      type: str
      returned: always
    webhook:
      description: V(delivered), V(failed) or V(off) (no O(notify_url), or check mode).
      type: str
      returned: always
    webhook_error:
      description: Why the webhook failed (HTTP status, timeout, refused connection), without the URL.
      type: str
      returned: always
    webhook_attempts:
      description: Tries made.
      type: int
      returned: always
    webhook_target:
      description: C(scheme://host:port) of O(notify_url).
      type: str
      returned: when O(notify_url) is set and valid
    seconds:
      description: Seconds the record took (journal and webhook); at most about 5 for the webhook.
      type: float
      returned: always
    fields:
      description: The record (C(ACTION), C(INSTANCE), C(OUTCOME), C(REASON), C(HOST), C(TIME) and the extra fields).
      type: dict
      returned: always
  sample: {journal: true, journal_error: null, webhook: delivered, webhook_error: null, webhook_attempts: 1,
           webhook_target: "https://hooks.example.com", fields: {ACTION: drain, INSTANCE: www, OUTCOME: drained}}
'''

import re

from ansible_collections.opsguard.anqicms.plugins.module_utils import record
from ansible_collections.opsguard.anqicms.plugins.module_utils.options import new_module

WORD = re.compile(r'[a-z][a-z0-9_-]{0,31}')
CONTROL = re.compile(r'[\x00-\x1f\x7f]')


def option_problems(p: dict) -> list:
    """Every problem with the options, each naming the option; the URL is never repeated."""
    problems = []
    for name in ('action', 'outcome'):
        if not isinstance(p.get(name), str) or not WORD.fullmatch(p[name]):
            problems.append('%s must be a lowercase word of 1 to 32 letters, digits, "_" or "-" starting with a letter, got %s'
                            % (name, record.short(p.get(name))))
    instance = p.get('instance')
    if not isinstance(instance, str) or not 1 <= len(instance) <= 255 or CONTROL.search(instance):
        problems.append('instance must be 1 to 255 characters without control characters, got %s' % record.short(instance))
    reason = p.get('reason')
    if not isinstance(reason, str) or len(reason) > 1024:
        problems.append('reason must be text of at most 1024 characters, got %s' % record.short(reason))
    problems += record.field_problems(p.get('fields'))
    if p.get('notify_url') is not None:
        problem = record.url_problem(p['notify_url'])
        if problem:
            problems.append(problem)
    return problems


def main() -> None:
    module = new_module(
        dict(
            action=dict(type='str', required=True),
            instance=dict(type='str', required=True),
            outcome=dict(type='str', required=True),
            reason=dict(type='str', default=''),
            fields=dict(type='dict', default={}),
            notify_url=dict(type='str', no_log=True),
        ),
        'action_record',
        supports_check_mode=True,
    )
    p = module.params
    problems = option_problems(p)
    if problems:
        module.fail_json(msg='action_record refused on %s, nothing was recorded: %s' % (record.hostname(), '; '.join(problems)),
                         changed=False)
    if module.check_mode:
        module.exit_json(changed=False, recorded=record.not_recorded('check mode: nothing recorded'))
    entry = record.build(p['action'], p['instance'], p['outcome'], p['reason'], p['fields'])
    module.exit_json(changed=False, recorded=record.emit(entry, p['notify_url']))


if __name__ == '__main__':
    main()
