# Copyright: opsguard maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter missing_packages: which of a role's Debian packages dpkg does not have installed (documented in
missing_packages.yml). The roles run apt only for those: loading apt's cache takes seconds and tens of MiB on the
host, dpkg-query a few milliseconds.

The output read is dpkg-query's ``${binary:Package}\t${db:Status-Status}`` lines: a package of a foreign architecture
is shown as ``name:arch``, so it never counts as the native package installed (apt then runs, as without this filter)."""

from __future__ import annotations

import json
import re
import typing as t

from ansible.errors import AnsibleFilterError

# A plain Debian package name (Debian Policy 5.6.1); anything else (pkg=version, pkg:arch, pkg/release, patterns)
# is left to apt to resolve, so it always counts as missing.
_PLAIN_NAME = re.compile(r'[a-z0-9][a-z0-9+.-]+\Z')
MAX_PACKAGES = 1000
MAX_OUTPUT = 1 << 20


def _shown(value: t.Any) -> str:
    """A value for an error message: JSON when it can be, else its type (never an exception of its own)."""
    try:
        return json.dumps(value, default=str)[:220]
    except (TypeError, ValueError, RecursionError):
        return 'a %s' % type(value).__name__


def missing_packages(wanted: t.Any, dpkg_query_output: t.Any) -> list[str]:
    """The items of `wanted` that the dpkg-query output does not show as installed, in their order, once each."""
    if not isinstance(wanted, (list, tuple)):
        raise AnsibleFilterError('missing_packages: the package list must be a list of package names, got %s'
                                 % type(wanted).__name__)
    if len(wanted) > MAX_PACKAGES:
        raise AnsibleFilterError('missing_packages: %d packages is more than %d' % (len(wanted), MAX_PACKAGES))
    for item in wanted:
        if not isinstance(item, str) or not item.strip() or len(item) > 200 or any(c.isspace() for c in item):
            raise AnsibleFilterError('missing_packages: package %s must be a non-empty name without blanks' % _shown(item))
    if not isinstance(dpkg_query_output, str):
        raise AnsibleFilterError('missing_packages: the dpkg-query output must be text, got %s'
                                 % type(dpkg_query_output).__name__)
    installed = set()
    for line in dpkg_query_output[:MAX_OUTPUT].splitlines():
        name, tab, state = line.partition('\t')
        if tab and state.strip() == 'installed' and _PLAIN_NAME.match(name):
            installed.add(name)
    missing: list[str] = []
    for item in wanted:
        if (item not in installed or not _PLAIN_NAME.match(item)) and item not in missing:
            missing.append(item)
    return missing


class FilterModule:
    """Debian packages a role still has to install."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {'missing_packages': missing_packages}
