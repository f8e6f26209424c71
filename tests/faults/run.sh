#!/bin/sh
# Fault scenarios (docs/reliability.md). Usage: tests/faults/run.sh FACTLOG_BIN FSYNC_SHIM POWERLOSS_SHIM [pytest args]
set -eu
bin=$1 shim=$2 powerloss=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
rc=0
FACTLOG_BIN=$bin FACTLOG_FSYNC_SHIM=$shim FACTLOG_POWERLOSS_SHIM=$powerloss PYTHONDONTWRITEBYTECODE=1 \
	/usr/bin/python3 -m pytest -q -p no:cacheprovider "$here" "$@" || rc=$?
[ "$rc" -eq 5 ] && echo "$0: no test ran" >&2
exit "$rc"
