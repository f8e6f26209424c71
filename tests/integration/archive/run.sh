#!/bin/sh
# Archive (tiered storage) integration tests: a directory archive and an S3-compatible one (s3rver from
# npm), read back over the Kafka protocol (confluent-kafka) and HTTP after local retention dropped the
# segments, and after a restart.
# Usage: tests/integration/archive/run.sh path/to/factlog [pytest args]
set -eu
[ $# -ge 1 ] || { echo "usage: $0 path/to/factlog [pytest args]" >&2; exit 2; }
bin=$1
shift
case "$bin" in /*) ;; *) bin="$(pwd)/$bin" ;; esac
[ -x "$bin" ] || { echo "$0: $bin is not an executable" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
if [ ! -x "$here/node_modules/.bin/s3rver" ]; then
	(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
		{ echo "$0: npm ci failed in $here" >&2; exit 1; }
fi
cd "$root"
rc=0
FACTLOG_BIN=$bin S3RVER="$here/node_modules/.bin/s3rver" PYTHONDONTWRITEBYTECODE=1 \
	/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration/archive "$@" || rc=$?
[ "$rc" -eq 5 ] && echo "$0: no test ran" >&2
exit "$rc"
