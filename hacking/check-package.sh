#!/usr/bin/env bash
# The collection as users get it: build the tarball, install it into a scratch collections path, and check
# that ansible-doc lists every module and renders each one's documentation.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-$PWD/.venv}
out=.build/dist
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$VENV/bin/ansible-galaxy" collection build --force --output-path "$out" >/dev/null
version=$(sed -n 's/^version: *//p' galaxy.yml)
tarball=$out/opsguard-anqicms-$version.tar.gz
"$VENV/bin/ansible-galaxy" collection install --force --offline --no-deps -p "$scratch" "$tarball" >/dev/null
listed=$(ANSIBLE_COLLECTIONS_PATH=$scratch "$VENV/bin/ansible-doc" -t module -l opsguard.anqicms | awk '{print $1}' | sort)
expected=$(find plugins/modules -maxdepth 1 -name '*.py' ! -name '__init__.py' -printf 'opsguard.anqicms.%f\n' | sed 's/\.py$//' | sort)
if [ "$listed" != "$expected" ]; then
    echo "ansible-doc lists:"; echo "$listed"; echo "plugins/modules has:"; echo "$expected"
    exit 1
fi
for m in $expected; do
    ANSIBLE_COLLECTIONS_PATH=$scratch "$VENV/bin/ansible-doc" -t module "$m" >/dev/null
done
echo "package: $(basename "$tarball") ($(du -k "$tarball" | cut -f1) KiB), $(echo "$expected" | wc -l) modules documented"
