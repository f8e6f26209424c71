#!/usr/bin/env bash
# Functions runtime benchmark (issue 6): a `factlog serve` on a scratch data directory, a no-op C handler
# (bench/fn_noop.c), and librdkafka producers (bench/bench_functions.c):
#   1. latency from append (the producer's send, acks=all, fsynced) to the handler receiving the event,
#      p50/p99, at 1,000 and at 50,000 events/s offered (100-byte events, ordering key, batch_size 100);
#   2. throughput through the no-op handler with batches of 1,000: a backlog of N events is written first,
#      then a function starting at `earliest` is deployed and timed until its group has committed all of it.
# Prints a markdown table with the targets. Builds nothing: needs BUILD_DIR/factlog, BUILD_DIR/bench/fn_noop
# and BUILD_DIR/bench/bench_functions.
# Usage: bench/functions.sh [BUILD_DIR]
#   env: BENCH_DIR, SECONDS_EACH (10), BACKLOG (2000000), PARTITIONS (4), RATES ("1000 50000"; "none" for
#        the throughput run alone)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
BUILD=$(cd "${1:-build}" && pwd)
BENCH_DIR=${BENCH_DIR:-bench/results/scratch}
SECS=${SECONDS_EACH:-10}
BACKLOG=${BACKLOG:-2000000}
PARTS=${PARTITIONS:-4}
need "$BUILD/factlog" "$BUILD/bench/fn_noop" "$BUILD/bench/bench_functions"
PID=""
scratch functions PID
ports=$(free_ports 2)
KPORT=${ports% *}
HPORT=${ports#* }
URL="http://127.0.0.1:$HPORT"
BOOT="127.0.0.1:$KPORT"
"$BUILD/factlog" serve --data "$S/data" --kafka-listen "$BOOT" --http-listen "127.0.0.1:$HPORT" \
	--group-initial-delay-ms 0 --log-level warn 2>"$S/server.log" &
PID=$!
for _ in $(seq 100); do curl -sf "$URL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "$URL/healthz" >/dev/null || { echo "factlog did not start"; cat "$S/server.log"; exit 1; }

app() { # $1: whether to include the throughput function
	cat >"$S/factlog.yml" <<YML
streams:
  lat: { partitions: $PARTS }
  tput: { partitions: $PARTS }
functions:
  lat:
    run: env LAT_OUT=$S/lat.txt $BUILD/bench/fn_noop
    scale: { min: 4, max: 4 }
    triggers:
      - stream: lat
        start: latest
        ordering: key
        concurrency: 4
        batch_size: 100
YML
	if [ "$1" = yes ]; then
		cat >>"$S/factlog.yml" <<YML
  tput:
    run: $BUILD/bench/fn_noop
    scale: { min: 0, max: $PARTS }
    triggers:
      - stream: tput
        start: earliest
        ordering: partition
        batch_size: 1000
YML
	fi
}
app no
"$BUILD/factlog" deploy "$S/factlog.yml" --url "$URL" >/dev/null
sleep 2 # the group's first assignment

pct() { # percentile $2 of the numbers in file $1
	sort -n "$1" | awk -v p="$2" '{a[NR]=$1} END {i=int(NR*p/100); if (i<1) i=1; print a[i]}'
}
declare -A LAT50 LAT99
rates=${RATES:-1000 50000}
[ "$rates" = none ] && rates=""
for rate in $rates; do
	: >"$S/lat.txt"
	"$BUILD/bench/bench_functions" paced --brokers "$BOOT" --topic lat --rate "$rate" --seconds "$SECS" >"$S/p.txt"
	sleep 1
	n=$(wc -l <"$S/lat.txt")
	LAT50[$rate]=$(awk "BEGIN{printf \"%.2f\", $(pct "$S/lat.txt" 50)/1000}")
	LAT99[$rate]=$(awk "BEGIN{printf \"%.2f\", $(pct "$S/lat.txt" 99)/1000}")
	echo "latency at $rate events/s: $n events, p50 ${LAT50[$rate]} ms, p99 ${LAT99[$rate]} ms ($(cat "$S/p.txt"))"
done

"$BUILD/bench/bench_functions" fill --brokers "$BOOT" --topic tput --count "$BACKLOG" >"$S/fill.txt"
echo "backlog: $(cat "$S/fill.txt")"
app yes
# each partition's last offset, read before the clock starts (Python's start-up took CPU from the run)
lasts=$(curl -sf "$URL/v1/topics/tput" | /usr/bin/python3 -c 'import json, sys
print(" ".join("%d:%d" % (x["partition"], x["high_watermark"] - 1) for x in json.load(sys.stdin)["partitions"]))')
t0=$(date +%s.%N)
cpu0=$(cpu_ticks "$PID")
"$BUILD/factlog" deploy "$S/factlog.yml" --url "$URL" >/dev/null
for pl in $lasts; do
	p=${pl%:*} last=${pl#*:}
	[ "$last" -ge 0 ] || continue
	code=$(curl -s -o /dev/null -w '%{http_code}' \
		"$URL/v1/groups/tput/wait?topic=tput&partition=$p&offset=$last&timeout_ms=300000")
	[ "$code" = 200 ] || { echo "partition $p: wait answered $code"; exit 1; }
done
t1=$(date +%s.%N)
cpu1=$(cpu_ticks "$PID")
TPUT=$(awk "BEGIN{printf \"%.0f\", $BACKLOG/($t1-$t0)}")
echo "throughput: $BACKLOG events in $(awk "BEGIN{printf \"%.2f\", $t1-$t0}") s = $TPUT events/s"
echo "$cpu0 $cpu1" | awk -v hz="$(getconf CLK_TCK)" -v n="$BACKLOG" '{
	printf "CPU per event: factlog %.2f us, handlers %.2f us (their processes started in the run count from their start)\n",
		($3 - $1) * 1e6 / hz / n, ($4 - $2) * 1e6 / hz / n }'
echo "factlog peak RSS: $(awk '/VmHWM/{printf "%d MB", $2/1024}' /proc/$PID/status)"
"$BUILD/factlog" functions describe tput --url "$URL" | /usr/bin/python3 -c 'import json,sys
d=json.load(sys.stdin); s=d["stats"]
print("  invocations %d, events %d, workers at the end %d, cold starts %d" % (d["invocations"], s["events_ok"], d["workers"], s["cold_starts"]))'

cat <<EOF2

| Functions ($(date -u +%Y-%m-%d), $(nproc) cores) | measured | target |
|---|---|---|
| append -> handler p50 / p99 at 1,000 events/s | ${LAT50[1000]:--} / ${LAT99[1000]:--} ms | p99 < 10 ms |
| append -> handler p50 / p99 at 50,000 events/s | ${LAT50[50000]:--} / ${LAT99[50000]:--} ms | (recorded) |
| no-op handler, batches of 1,000, backlog of $BACKLOG | $TPUT events/s | >= 1,000,000 events/s |
EOF2
