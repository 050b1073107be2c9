#!/usr/bin/env bash
# Run promtool from Debian's `prometheus` package, unpacked into .build/tools/ (never installed on the machine:
# installing the package would enable its services in every test host, which share the machine's /usr and /etc).
# The package is downloaded once (`apt-get download`) and kept; later runs reuse the unpacked copy.
#
#   hacking/promtool.sh check rules extensions/prometheus/opsguard.rules.yml
#   hacking/promtool.sh test rules tests/prometheus/*.yml
#   hacking/promtool.sh --path        # only print the path of promtool (after unpacking it if needed)
#   hacking/promtool.sh --sanity      # check and unit-test the collection's rules (what `make sanity` runs)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${OPSGUARD_TOOLS:-$ROOT/.build/tools}
PROMTOOL=$TOOLS/prometheus/usr/bin/promtool

if [ ! -x "$PROMTOOL" ]; then
    command -v apt-get >/dev/null || { echo "promtool.sh: apt-get is needed to download Debian's prometheus package" >&2; exit 2; }
    command -v dpkg-deb >/dev/null || { echo "promtool.sh: dpkg-deb is needed to unpack Debian's prometheus package" >&2; exit 2; }
    mkdir -p "$TOOLS"
    work=$(mktemp -d "$TOOLS/.download.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    if ! (cd "$work" && apt-get download prometheus >/dev/null 2>"$work/apt.log"); then
        cat "$work/apt.log" >&2
        echo "promtool.sh: 'apt-get download prometheus' failed; run 'apt-get update' (as root) and try again" >&2
        exit 2
    fi
    dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
    [ -x "$work/root/usr/bin/promtool" ] || { echo "promtool.sh: the package has no usr/bin/promtool" >&2; exit 2; }
    rm -rf "$TOOLS/prometheus"
    mv "$work/root" "$TOOLS/prometheus"
fi

case "${1:-}" in
    --path) echo "$PROMTOOL" ;;
    --sanity)
        cd "$ROOT"
        "$PROMTOOL" check rules extensions/prometheus/*.rules.yml
        "$PROMTOOL" test rules tests/prometheus/*.yml
        ;;
    *) exec "$PROMTOOL" "$@" ;;
esac
