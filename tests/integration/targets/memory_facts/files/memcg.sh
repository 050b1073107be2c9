#!/bin/sh
# memcg.sh create NAME LIMIT_BYTES | path NAME | self | delete NAME
# A child memory cgroup of this shell's own cgroup (v1 memory controller, or v2 when delegable).
set -eu
action=$1 name=${2:-}
mounts() { awk '{for (i = 7; i <= NF; i++) if ($i == "-") {print $(i + 1), $5, $(i + 3); break}}' /proc/self/mountinfo; }
v1=$(mounts | awk '$1 == "cgroup" && $3 ~ /(^|,)memory(,|$)/ {print $2; exit}')
if [ -n "$v1" ]; then
    self=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)
    limit_file=memory.limit_in_bytes
    base=$v1
else
    base=$(mounts | awk '$1 == "cgroup2" {print $2; exit}')
    self=$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup)
    limit_file=memory.max
fi
dir="$base${self%/}/$name"
case $action in
    path) echo "${self%/}/$name" ;;
    self) echo "$self" ;;
    create)
        mkdir -p "$dir"
        echo "$3" > "$dir/$limit_file"
        echo "$dir" ;;
    delete)
        [ ! -d "$dir" ] || rmdir "$dir" ;;
esac
