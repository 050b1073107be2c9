#!/usr/bin/env bash
# The collection in an execution environment: build the tarball, let `ansible-builder create` write the build context
# of tests/ee/execution-environment.yml (no image is built), then do what the image build does with the tarball --
# install it and run the context's own introspect script on it -- and check that the requirements it collects are
# exactly those meta/execution-environment.yml names (meta/ee-requirements.txt, meta/ee-bindep.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
fail() { echo "check-ee: $*" >&2; exit 1; }

cp tests/ee/execution-environment.yml tests/ee/requirements.yml "$scratch/"
"$VENV/bin/ansible-galaxy" collection build --force --output-path "$scratch/dist" >/dev/null
mv "$scratch"/dist/opsguard-anqicms-*.tar.gz "$scratch/opsguard-anqicms.tar.gz"
(cd "$scratch" && "$VENV/bin/ansible-builder" create -f execution-environment.yml -c context >/dev/null)

ctx=$scratch/context
[ -s "$ctx/Containerfile" ] || [ -s "$ctx/Dockerfile" ] || fail "ansible-builder wrote no Containerfile/Dockerfile"
cmp -s "$scratch/opsguard-anqicms.tar.gz" "$ctx/_build/collections/opsguard-anqicms.tar.gz" \
    || fail "the build context lacks the collection tarball (_build/collections/opsguard-anqicms.tar.gz)"
grep -q 'collections/opsguard-anqicms.tar.gz' "$ctx/_build/requirements.yml" \
    || fail "the build context's requirements.yml does not install the collection tarball"
[ -f "$ctx/_build/scripts/introspect.py" ] || fail "the build context has no introspect script"

# The image build's galaxy stage (install the tarball) and builder stage (introspect the installed collections).
"$VENV/bin/ansible-galaxy" collection install --force --offline --no-deps -p "$scratch/collections" \
    "$ctx/_build/collections/opsguard-anqicms.tar.gz" >/dev/null 2>&1
"$VENV/bin/python" "$ctx/_build/scripts/introspect.py" introspect --sanitize "$scratch/collections" \
    --write-pip "$scratch/pip.txt" --write-bindep "$scratch/bindep.txt" >"$scratch/introspect.log" || { cat "$scratch/introspect.log"; fail "introspect failed"; }

strip() { sed -e 's/[[:space:]]*#.*$//' -e '/^[[:space:]]*$/d' "$1" | sort; }
for pair in "meta/ee-requirements.txt:$scratch/pip.txt:python" "meta/ee-bindep.txt:$scratch/bindep.txt:system"; do
    IFS=: read -r ours collected kind <<<"$pair"
    grep -q 'from collection opsguard.anqicms' "$collected" || fail "no $kind requirement collected from opsguard.anqicms"
    if [ "$(strip "$ours")" != "$(strip "$collected")" ]; then
        echo "$ours:"; strip "$ours"; echo "collected for the image:"; strip "$collected"
        fail "the $kind requirements of the execution environment differ from $ours"
    fi
done
echo "execution environment: build context written, $(strip meta/ee-requirements.txt | wc -l) python and $(strip meta/ee-bindep.txt | wc -l) system requirements collected from the tarball"
