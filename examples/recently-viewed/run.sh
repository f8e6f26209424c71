#!/bin/sh
# Starts the recently-viewed example: `factlog serve` with this app loaded, on a data directory, and the
# shelf API beside it; prints what to try; Ctrl-C stops both cleanly (factlog flushes, seals and commits
# the function's position). Starting again continues from the data. `make run` calls this.
#
# Usage: examples/recently-viewed/run.sh FACTLOG_BINARY [DATA_DIR]
# Environment: KAFKA (127.0.0.1:9092), HTTP (127.0.0.1:8080), API (127.0.0.1:8081).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
factlog=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
data=${2:-./data}
KAFKA=${KAFKA:-127.0.0.1:9092}
HTTP=${HTTP:-127.0.0.1:8080}
API=${API:-127.0.0.1:8081}
# Debian's interpreter: it sees python3-confluent-kafka, which clicks.py uses for the Kafka protocol.
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3

mkdir -p "$data"
data=$(cd "$data" && pwd)
"$factlog" serve --data "$data" --kafka-listen "$KAFKA" --http-listen "$HTTP" --app "$here/factlog.yml" &
fl=$!
api=""
stop() {
	trap - INT TERM
	set +e
	echo
	echo "stopping: the shelf API ($api), then factlog ($fl)"
	if [ -n "$api" ]; then
		kill "$api" 2>/dev/null
		wait "$api" 2>/dev/null
	fi
	kill -TERM "$fl" 2>/dev/null
	wait "$fl" 2>/dev/null
	echo "factlog exited ($?); the data stays in $data"
	exit 0
}
trap stop INT TERM

i=0
until curl -sf "http://$HTTP/readyz" >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 "$fl" 2>/dev/null; then
		echo "factlog did not become ready on http://$HTTP (is the port taken? another 'make run'?)" >&2
		kill "$fl" 2>/dev/null || true
		exit 1
	fi
	sleep 0.1
done
$py "$here/api.py" --db "$data/functions/shelf/shelf.db" --listen "$API" --factlog "http://$HTTP" &
api=$!

cat <<EOF

factlog is running: Kafka on $KAFKA, HTTP on http://$HTTP, data in $data
the recently-viewed example is loaded: stream 'clicks', function 'shelf', shelf API on http://$API

Try, in another terminal:

  # a click (a CloudEvent keyed by customer); the answer is its receipt once it is durable
  curl -s -XPOST $HTTP/v1/topics/clicks/events -H 'ce-specversion: 1.0' -H 'ce-id: click-1' \\
       -H 'ce-source: /web' -H 'ce-type: com.example.product.viewed' -H 'ce-partitionkey: alice' \\
       -H 'content-type: application/json' -d '{"customer":"alice","product":"red-shoes"}'
  #   {"topic":"clicks","partition":P,"offset":O}

  # alice's shelf, once the function has processed that click (read-your-writes)
  curl -s '$API/shelf/alice?after=P:O'

  # traffic: 1,000 clicks/s for 10 s, then a burst of 20,000/s, over HTTP and Kafka; prints latencies
  $py examples/recently-viewed/clicks.py --http http://$HTTP --bootstrap $KAFKA --api http://$API \\
       --profile 1000:10,20000:3

  ./build/factlog functions describe shelf --url http://$HTTP    # lag, invocations, errors, workers
  ./build/factlog tail --topic clicks --url http://$HTTP          # the live tail (Server-Sent Events)
  curl -s $HTTP/metrics | grep clicks                             # Prometheus metrics
  kcat -b $KAFKA -C -t clicks -o -5 -e -f '%p %o %k %s\\n'          # the same clicks over Kafka

Ctrl-C stops factlog and the API; 'make run' again continues from $data.
EOF
rc=0
wait "$fl" || rc=$?
# factlog ended on its own (not through Ctrl-C): take the API down too.
kill "$api" 2>/dev/null || true
exit $rc
