#!/bin/sh
# Functions runtime integration tests: real handler processes (Python), an HTTP target, confluent-kafka
# producing and checking, against `factlog serve --app` and against librdkafka's mock cluster.
# Usage: tests/integration/functions/run.sh path/to/factlog [pytest args]   (FACTLOG_MOCK_CLUSTER: the helper)
set -eu
[ $# -ge 1 ] || { echo "usage: $0 path/to/factlog [pytest args]" >&2; exit 2; }
bin=$1
shift
case "$bin" in /*) ;; *) bin="$(pwd)/$bin" ;; esac
[ -x "$bin" ] || { echo "$0: $bin is not an executable" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cd "$root"
rc=0
FACTLOG_BIN=$bin PYTHONDONTWRITEBYTECODE=1 \
	/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration/functions "$@" || rc=$?
[ "$rc" -eq 5 ] && echo "$0: no test ran" >&2
exit "$rc"
