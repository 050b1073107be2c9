#!/usr/bin/env bash
# Run ansible-test on this collection.
# ansible-test only works inside a directory named ansible_collections/<namespace>/<name> and
# resolves symlinks, so the collection's files (tracked and new, not ignored) are mirrored to
# .build/ansible_collections/opsguard/anqicms first (rsync: only changed files are copied);
# OPSGUARD_MIRROR=DIR puts the mirror under DIR instead, so that two runs can go side by side.
# Without internet access, the pip bootstrap ansible-test downloads is replaced by
# tests/utils/get_pip_offline.py.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
DEST=${OPSGUARD_MIRROR:-$ROOT/.build}/ansible_collections/opsguard/anqicms

pip_version=$(sed -n "s/^ *pip='\([0-9.]*\)',$/\1/p" \
    "$("$VENV/bin/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py" | head -n1)
cache=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [ -n "$pip_version" ] && [ ! -s "$cache" ]; then
    mkdir -p "$(dirname "$cache")"
    url="https://ci-files.testing.ansible.com/ansible-test/get-pip-${pip_version}.py"
    if curl -fsSL --max-time 20 -o "$cache.download" "$url" 2>/dev/null; then
        mv "$cache.download" "$cache"
    else
        rm -f "$cache.download"
        echo "[ansible-test] pip bootstrap not downloadable: using tests/utils/get_pip_offline.py" >&2
        cp tests/utils/get_pip_offline.py "$cache"
    fi
fi

mkdir -p "$DEST"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard | grep -zv '^\.build/' \
        | rsync -a --delete-missing-args --files-from=- --from0 ./ "$DEST/"
    # remove files that disappeared from the collection
    (cd "$DEST" && find . -path ./tests/output -prune -o -type f -print0) | sed -z 's|^\./||' \
        | while IFS= read -r -d '' f; do [ -e "$ROOT/$f" ] || rm -f "$DEST/$f"; done
else
    rsync -a --delete --exclude .build --exclude .venv --exclude .collections --exclude tests/output ./ "$DEST/"
fi

cd "$DEST"
# The mirror lies inside this repository's work tree; give it a repository of its own so that
# ansible-test lists the mirror's files rather than the (ignored) .build directory.
[ -d .git ] || git init -q .
export PATH=$VENV/bin:$PATH
exec ansible-test "$@"
