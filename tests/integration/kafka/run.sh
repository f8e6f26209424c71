#!/bin/sh
# Kafka-compatibility integration tests: real clients (kcat, confluent-kafka, kafka-python, kafkajs)
# against a factlog broker started per test.
# Usage: tests/integration/kafka/run.sh path/to/factlog [extra pytest args, e.g. -m idempotent]
# Needs `scripts/install-deps test` (Debian packages); installs kafkajs from package-lock.json.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 path/to/factlog [pytest args]" >&2; exit 2; }
bin=$1
shift
case "$bin" in /*) ;; *) bin="$(pwd)/$bin" ;; esac
[ -x "$bin" ] || { echo "$0: $bin is not an executable" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
if [ ! -d "$here/node_modules/kafkajs" ]; then
	(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
		{ echo "$0: npm ci failed in $here" >&2; exit 1; }
fi
cd "$root"
rc=0
FACTLOG_BIN=$bin KAFKAJS_NO_PARTITIONER_WARNING=1 PYTHONDONTWRITEBYTECODE=1 \
	/usr/bin/python3 -m pytest -q -x -p no:cacheprovider tests/integration/kafka "$@" || rc=$?
# pytest's 5 means no test ran: that is a failure here.
[ "$rc" -eq 5 ] && echo "$0: no test ran" >&2
exit "$rc"
