#!/usr/bin/env bash
### check and start AnQiCMS
# the bin name is anqicms
BINNAME=anqicms
BINPATH="$( cd "$( dirname "$0" )" && pwd )"
cd "$BINPATH" || exit 1

# check the pid if exists (any process named anqicms on this host)
exists=$(pgrep -x "$BINNAME")
echo "$(date +'%Y%m%d %H:%M:%S') $BINNAME PID check: $exists" >> "$BINPATH/check.log"
if [ -n "$exists" ]; then
    echo "$BINNAME is running"
else
    echo "$BINNAME NOT running, starting"
    nohup "./$BINNAME" >> "$BINPATH/running.log" 2>&1 &
fi
