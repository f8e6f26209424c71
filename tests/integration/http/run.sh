#!/bin/sh
# HTTP/CloudEvents gateway integration tests: curl, the cloudevents npm SDK, confluent-kafka and promtool
# against a `factlog serve` started per test (Kafka and HTTP on free 127.0.0.1 ports).
# Usage: tests/integration/http/run.sh path/to/factlog [extra pytest args, e.g. -x or -k dedup]
# Needs `scripts/install-deps test` (Debian packages); installs cloudevents from package-lock.json.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 path/to/factlog [pytest args]" >&2; exit 2; }
bin=$1
shift
case "$bin" in /*) ;; *) bin="$(pwd)/$bin" ;; esac
[ -x "$bin" ] || { echo "$0: $bin is not an executable" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
if [ ! -d "$here/node_modules/cloudevents" ]; then
	(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
		{ echo "$0: npm ci failed in $here" >&2; exit 1; }
fi
for tool in curl node promtool; do
	command -v "$tool" >/dev/null 2>&1 ||
		{ echo "$0: $tool not found (run scripts/install-deps test)" >&2; exit 1; }
done
cd "$root"
rc=0
FACTLOG_BIN=$bin PYTHONDONTWRITEBYTECODE=1 \
	/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration/http "$@" || rc=$?
# pytest's 5 means no test ran: that is a failure here.
[ "$rc" -eq 5 ] && echo "$0: no test ran" >&2
exit "$rc"
