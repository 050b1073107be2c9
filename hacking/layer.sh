#!/usr/bin/env bash
# Run one test layer, print its summary line with the wall time, and stop the run on failure.
# `layer.sh --summary` prints the table of the layers run so far.
# `layer.sh --note TEXT NAME CMD...` adds TEXT to the layer's line (e.g. how many workers ran it).
# With OPSGUARD_LAYER_LANE=1 (a layer in one of two lanes side by side) a failure leaves the table to the caller,
# which prints it once both lanes have stopped.
set -uo pipefail
log=${OPSGUARD_LAYER_LOG:-.build/layers.log}
if [ "${1:-}" = "--summary" ]; then
    printf '\n== test layers ==\n'; cat "$log" 2>/dev/null; rm -f "$log"; exit 0
fi
note=
if [ "${1:-}" = "--note" ]; then note=$2; shift 2; fi
name=$1; shift
printf '\n\033[1m== layer: %s ==\033[0m\n' "$name"
start=$(date +%s)
"$@"
rc=$?
secs=$(( $(date +%s) - start ))
if [ $rc -eq 0 ]; then status=passed; else status="FAILED (exit $rc)"; fi
line=$(printf '%-12s %-20s %4ss' "$name" "$status" "$secs")
[ -n "$note" ] && line="$line  $note"
printf '\033[1m== %s ==\033[0m\n' "$line"
echo "$line" >> "$log"
if [ $rc -ne 0 ] && [ "${OPSGUARD_LAYER_LANE:-}" != 1 ]; then
    printf '\n== test layers ==\n'; cat "$log"; rm -f "$log"
fi
exit $rc
