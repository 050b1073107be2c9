#!/usr/bin/env bash
# Build the AnQiCMS 3.5.8 stand-in and pack it like the real Linux release.
# Usage: tests/standin/build.sh [OUTDIR]   (default: <repo>/.build/standin)
# Prints the path of anqicms-linux-amd64-v3.5.8.zip; does nothing when the sources are unchanged.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUTDIR="${1:-$ROOT/.build/standin}"
ZIPNAME="anqicms-linux-amd64-v3.5.8.zip"

command -v go >/dev/null || { echo "build.sh: 'go' not found; install Debian's golang-go" >&2; exit 2; }
DRIVER=/usr/share/gocode/src/github.com/go-sql-driver/mysql
[ -d "$DRIVER" ] || { echo "build.sh: $DRIVER missing; install golang-github-go-sql-driver-mysql-dev" >&2; exit 2; }

mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
exec 9>"$OUTDIR/.lock"
flock -w 300 9 || { echo "build.sh: could not lock $OUTDIR/.lock within 300 s" >&2; exit 2; }

stamp="$( (cd "$HERE" && find go release build.sh -type f -print0 | sort -z | xargs -0 sha256sum; \
           stat -c '%a %n' release/start.sh release/stop.sh; go version) | sha256sum | cut -d' ' -f1)"
if [ -f "$OUTDIR/$ZIPNAME" ] && [ -f "$OUTDIR/$ZIPNAME.sha256" ] && [ "$(cat "$OUTDIR/.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "build.sh: up to date" >&2
    echo "$OUTDIR/$ZIPNAME"
    exit 0
fi

stage="$OUTDIR/stage"
rm -rf "$stage"
mkdir -p "$stage/cache" "$stage/source" "$OUTDIR/gopath"
export GO111MODULE=off GOPATH="$OUTDIR/gopath:/usr/share/gocode" GOCACHE="$OUTDIR/gocache" CGO_ENABLED=0 GOFLAGS=
(cd "$HERE/go/anqicms" && go build -trimpath -ldflags "-s -w -buildid=" -o "$stage/anqicms" .)
(cd "$HERE/go/cwebp" && go build -trimpath -ldflags "-s -w -buildid=" -o "$stage/source/cwebp_linux_amd64" .)
cp -a "$HERE/release/." "$stage/"

python3 - "$stage" "$OUTDIR/$ZIPNAME.tmp" <<'PY'
import os
import stat
import sys
import zipfile

stage, out = sys.argv[1], sys.argv[2]
stamp = (2024, 1, 1, 0, 0, 0)
entries = []
for dirpath, dirnames, filenames in os.walk(stage):
    dirnames.sort()
    rel = os.path.relpath(dirpath, stage)
    if rel != ".":
        entries.append(rel.replace(os.sep, "/") + "/")
    entries.extend(os.path.join(rel, f).replace(os.sep, "/").removeprefix("./") for f in sorted(filenames))
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
    for name in sorted(entries):
        full = os.path.join(stage, name.rstrip("/"))
        mode = stat.S_IMODE(os.stat(full).st_mode)
        info = zipfile.ZipInfo(name, date_time=stamp)
        info.create_system = 3
        if name.endswith("/"):
            info.external_attr = ((stat.S_IFDIR | mode) << 16) | 0x10
            zf.writestr(info, b"")
        else:
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(full, "rb") as fh:
                zf.writestr(info, fh.read())
PY
mv -f "$OUTDIR/$ZIPNAME.tmp" "$OUTDIR/$ZIPNAME"
(cd "$OUTDIR" && sha256sum "$ZIPNAME" > "$ZIPNAME.sha256.tmp" && mv -f "$ZIPNAME.sha256.tmp" "$ZIPNAME.sha256")
echo "$stamp" > "$OUTDIR/.stamp"
echo "build.sh: built $OUTDIR/$ZIPNAME" >&2
echo "$OUTDIR/$ZIPNAME"
