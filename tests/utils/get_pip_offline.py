"""Offline stand-in for the pip bootstrap script that ansible-test downloads.

ansible-test creates its virtual environments with a ``get-pip.py`` it fetches from
the internet and caches as ``~/.ansible/test/cache/get_pip_<version>.py``. On an
air-gapped machine (or one that only reaches a package mirror) that download fails.
This script takes its place: it bootstraps pip from the interpreter's bundled wheel
(``ensurepip``) and then installs the requested pip version from the configured
package index, honouring the system CA bundle that ansible-test's filtered
environment would otherwise hide from pip (``PIP_CONFIG_FILE=/dev/null``).

It accepts the same arguments ansible-test passes to ``get-pip.py``.
``hacking/ansible-test.sh`` installs it only when the normal download is impossible.
"""
from __future__ import annotations

import os
import subprocess
import sys

CA_BUNDLES = (
    '/etc/ssl/certs/ca-certificates.crt',
    '/etc/pki/tls/certs/ca-bundle.crt',
    '/etc/ssl/cert.pem',
)
DROPPED = frozenset(('--no-setuptools', '--no-wheel'))


def pip_arguments(argv: list[str]) -> list[str]:
    """Return the pip install arguments for the options get-pip.py was given."""
    args = [arg for arg in argv if arg not in DROPPED]
    cert = os.environ.get('PIP_CERT') or next((path for path in CA_BUNDLES if os.path.exists(path)), None)
    extra = ['--cert', cert] if cert and '--cert' not in args else []
    return ['install', '--upgrade'] + extra + args


def main(argv: list[str]) -> int:
    """Bootstrap pip into the running interpreter's environment."""
    env = dict(os.environ)
    env.pop('PIP_CONFIG_FILE', None)
    subprocess.run([sys.executable, '-m', 'ensurepip', '--upgrade', '--default-pip'], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return subprocess.run([sys.executable, '-m', 'pip'] + pip_arguments(argv), check=False, env=env).returncode


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
