#!/usr/bin/env bash
# Build the collection's HTML documentation into .build/docs/html, the way docs.ansible.com shows a collection:
#   1. `antsibull-docs sphinx-init` writes a Sphinx project for opsguard.anqicms (conf.py gets hacking/docs/conf_extra.py
#      appended, the start page is hacking/docs/index.rst);
#   2. `antsibull-docs collection` writes the reference pages of every module, plugin (filters included) and role
#      (from meta/argument_specs.yml) found in the collection as it is now;
#   3. the Markdown guides of docs/ (playbooks, modules, roles, testing, ...) are added under guide/;
#   4. Sphinx (sphinx-ansible-theme, myst-parser) renders the site.
# A plugin whose documentation cannot be parsed gets an error page (and a message); OPSGUARD_DOCS_STRICT=1 fails on it
# instead, and turns Sphinx warnings into errors.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
OUT=${OPSGUARD_DOCS_OUT:-$ROOT/.build/docs}
export PATH=$VENV/bin:$PATH
export ANSIBLE_COLLECTIONS_PATH=$ROOT/.collections
[ -e "$ANSIBLE_COLLECTIONS_PATH/ansible_collections/opsguard/anqicms/galaxy.yml" ] \
    || { echo "docs: the collection is not linked at .collections; run hacking/setup.sh" >&2; exit 1; }

src=$OUT/src
rm -rf "$src" "$OUT/html"
mkdir -p "$OUT"
mkdir -m 700 "$src"   # antsibull-docs wants its directories writable by the owner only
strict=()
[ "${OPSGUARD_DOCS_STRICT:-0}" = 1 ] && strict=(--fail-on-error)
antsibull-docs sphinx-init --use-current --dest-dir "$src" --no-add-antsibull-docs-version \
    --project opsguard.anqicms --copyright 'opsguard maintainers' --title 'opsguard.anqicms documentation' \
    --html-short-title 'opsguard.anqicms' --index-rst-source hacking/docs/index.rst opsguard.anqicms >/dev/null
cat hacking/docs/conf_extra.py >> "$src/conf.py"
chmod 700 "$src/rst"
antsibull-docs --config-file "$src/antsibull-docs.cfg" collection --use-current "${strict[@]}" \
    --no-add-antsibull-docs-version --dest-dir "$src/rst" opsguard.anqicms | { grep -v '^$' || true; }
mkdir -p "$src/rst/guide"
(cd docs && find . -name '*.md' -print0 | xargs -0 -I{} cp --parents {} "$src/rst/guide/")

[ "${OPSGUARD_DOCS_STRICT:-0}" = 1 ] && strict=(-W --keep-going)
sphinx-build -q -b html -j auto "${strict[@]}" -c "$src" "$src/rst" "$OUT/html"
echo "docs: $OUT/html/index.html"
