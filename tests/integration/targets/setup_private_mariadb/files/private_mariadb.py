# -*- coding: utf-8 -*-
# Copyright: (c) 2026, opsguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The private MariaDB of the integration targets: ``private_mariadb.py start BASE`` / ``private_mariadb.py stop BASE``.

The server is ``PrivateMariaDB`` of tests/utils/mariadb.py, the one definition every test layer uses; ansible-test
copies that file (and tests/utils/ports.py) next to the targets through this target's ``needs/file`` aliases.
``start`` prints {"port", "socket", "pid"} as JSON and leaves the server running; ``stop`` stops it and removes BASE.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', '..', 'utils')))

from mariadb import PrivateMariaDB, main  # noqa: E402,F401  pylint: disable=wrong-import-position,import-error,unused-import

if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
