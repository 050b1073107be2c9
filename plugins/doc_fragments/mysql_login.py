# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options that override the database login an AnQiCMS instance has configured."""
from __future__ import annotations


class ModuleDocFragment(object):
    """Database login options shared by backup and restore."""

    DOCUMENTATION = r'''
options:
  login_user:
    description:
      - Database user for every site, instead of the credentials configured in C(config.json) and the
        C(websites) table. Use it with O(login_unix_socket) to work as the server's root through its socket.
      - It needs the rights the operation needs (restore creates and drops databases).
    type: str
  login_password:
    description:
      - Password of O(login_user). Handed to the client through an anonymous in-memory file (C(memfd), mode 0600)
        inherited as C(--defaults-file=/dev/fd/N), never written to disk, never on a command line.
      - Must not contain a line break or a NUL byte.
    type: str
  login_host:
    description:
      - Database host instead of the configured one, for every connection of the task (for a restore, the
        staging databases, the load of each dump, the table swap and the clean-up). The client connects over TCP.
      - Mutually exclusive with O(login_unix_socket). With O(login_user), the account needs its rights from this
        host; a dedicated account's grants are in the C(A database on another host) section of the fleet playbooks
        guide (C(docs/playbooks.md)) and the database role's C(database_restore_account) creates it.
    type: str
  login_port:
    description:
      - Database port instead of the configured one, from 1 to 65535.
    type: int
  login_unix_socket:
    description:
      - Connect through this Unix socket instead of TCP.
    type: path
'''
