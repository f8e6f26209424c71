#!/usr/bin/env bash
# HTTP/CloudEvents ingest: wrk posting single binary-mode CloudEvents (1 KiB) over keep-alive connections,
# and batches of 100, then artillery (npm, installed into bench/http/artillery on first use) posting single
# events from virtual users that each wait for every receipt, against factlog with --flush always (every
# 200 answer is durable), on loopback.
# Usage: bench/http.sh [BUILD_DIR]    env: BENCH_DIR (scratch dir on the disk under test), SECONDS_EACH
set -euo pipefail
BUILD=${1:-build}
BENCH_DIR=${BENCH_DIR:-bench/results/scratch}
SECS=${SECONDS_EACH:-10}
command -v wrk >/dev/null || { echo "wrk is not installed (Debian package wrk)" >&2; exit 1; }
mkdir -p "$BENCH_DIR"
S=$(cd "$(mktemp -d "$BENCH_DIR/http.XXXXXX")" && pwd)
PID=""
cleanup() {
	if [ -n "$PID" ]; then
		kill "$PID" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$PID" 2>/dev/null || true
	fi
	rm -rf "$S"
}
trap cleanup EXIT
"$BUILD/factlog" serve --data "$S/data" --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --log-level info \
	2> "$S/log" &
PID=$!
PORT=""
for _ in $(seq 50); do
	PORT=$(sed -n 's/.*http: listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$S/log" | head -1)
	[ -n "$PORT" ] && break
	sleep 0.1
done
[ -n "$PORT" ] || { echo "server did not start"; cat "$S/log"; exit 1; }
U=http://127.0.0.1:$PORT
curl -sf -XPOST "$U/v1/topics" -d '{"name":"clicks","partitions":8}' > /dev/null
echo "date: $(date -u +%Y-%m-%dT%H:%MZ); $(nproc) cores; wrk and factlog share them; load average $(cut -d' ' -f1-3 /proc/loadavg)"
# factlog's CPU time (user, system: clock ticks) and context switches (all its threads), for the costs per event.
proc_counts() {
	local cs=0 n
	for f in /proc/"$PID"/task/*/status; do
		n=$(awk '/_ctxt_switches/ { s += $2 } END { print s + 0 }' "$f" 2>/dev/null || echo 0)
		cs=$((cs + n))
	done
	echo "$(awk '{ print $14, $15 }' /proc/"$PID"/stat) $cs"
}
# Runs wrk; prints its RESULT line with factlog's CPU microseconds (user+system) and context switches per event.
run_wrk() {
	local conns=$1 script=$2 before after res
	before=$(proc_counts)
	res=$(wrk -t2 -c"$conns" -d"${SECS}s" -s "$script" "$U/v1/topics/clicks/events" | grep RESULT)
	after=$(proc_counts)
	echo "$res $(echo "$before $after $res" | awk -v hz="$(getconf CLK_TCK)" -v secs="$SECS" '{
		match($0, /events_per_s=[0-9]+/); ev = substr($0, RSTART + 13, RLENGTH - 13) * secs
		if (ev > 0) printf "factlog_cpu_us_per_event=%.1f (user %.1f) ctxsw_per_event=%.2f",
			($4 - $1 + $5 - $2) * 1e6 / hz / ev, ($4 - $1) * 1e6 / hz / ev, ($6 - $3) / ev }')"
}
single=$(run_wrk 64 bench/http/post_event.lua)
echo "single events, 64 connections: $single"
batch=$(run_wrk 16 bench/http/post_batch.lua)
echo "batches of 100, 16 connections: $batch"
A=bench/http/artillery
art=""
if [ ! -x "$A/node_modules/.bin/artillery" ]; then
	# --ignore-scripts: artillery's optional browser engine would download Chromium at install time.
	(cd "$A" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) ||
		echo "artillery: npm ci failed in $A (skipped)"
fi
if [ -x "$A/node_modules/.bin/artillery" ]; then
	(cd "$A" && FACTLOG_URL=$U ARRIVAL_RATE=${ARRIVAL_RATE:-20} SECONDS=$SECS LOOPS=${LOOPS:-200} \
		node_modules/.bin/artillery run --output "$S/artillery.json" scenario.yml >"$S/artillery.log" 2>&1) ||
		{ echo "artillery failed:"; tail -20 "$S/artillery.log"; }
	art=$(/usr/bin/python3 -c 'import json, sys
a = json.load(open(sys.argv[1]))["aggregate"]
c, r, t = a["counters"], a["rates"], a["summaries"]["http.response_time"]
bad = sum(v for k, v in c.items() if k.startswith("http.codes.") and not k.startswith("http.codes.2")) + c.get("vusers.failed", 0)
print("requests_per_s=%d ok=%d p50_ms=%s p99_ms=%s errors=%d" % (r["http.request_rate"], c.get("http.codes.200", 0), t["median"], t["p99"], bad))' "$S/artillery.json" 2>/dev/null || echo "no report")
	echo "artillery, single events, virtual users waiting for each receipt: $art"
fi
curl -s "$U/metrics" | grep -E "^factlog_http_(events|server_errors)_total"
echo
echo "| what | result | target |"
echo "|---|---|---|"
echo "| single CloudEvents, durable | $(echo "$single" | sed 's/RESULT //') | >= 50,000 events/s, p99 < 5 ms |"
echo "| batches of 100 x 1 KiB, durable | $(echo "$batch" | sed 's/RESULT //') | >= 300 MB/s |"
[ -n "$art" ] && echo "| artillery (npm), single CloudEvents, durable | $art | (the load generator is the limit) |"
