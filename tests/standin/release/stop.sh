#!/usr/bin/env bash
### stop AnQiCMS
# the bin name is anqicms; this sends SIGKILL to every process named anqicms on the host
BINNAME=anqicms
BINPATH="$( cd "$( dirname "$0" )" && pwd )"

exists=$(pgrep -x "$BINNAME")
echo "$(date +'%Y%m%d %H:%M:%S') $BINNAME PID check: $exists" >> "$BINPATH/check.log"
pgrep -x "$BINNAME" && pkill -9 "$BINNAME"
echo "$BINNAME is stop"
