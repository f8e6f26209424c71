#!/usr/bin/env bash
# The magic button (issue 10): replay throughput from the archive through a no-op handler. A topic with
# remote.storage.enable=true gets a backlog of 100-byte events (librdkafka, bench/bench_functions fill);
# its sealed segments go to a directory archive and local retention drops them, so the replay reads from
# the archive; then a replay (POST /v1/functions/rp/replay, what `factlog replay` does) runs the function
# (bench/fn_noop, batches of 10,000) from earliest, timed until its state is done.
# Prints events/s next to the target (5,000,000/s) and next to the machine's own limit for this protocol,
# measured first in the same run: bench/fn_ceiling sends the runtime's exact request text for as many
# events to as many fn_noop handlers, with no Kafka, no scheduler and no log (no runtime can be faster).
# After the replay, bench/replay_direct reads the same archive's segment files itself (no Kafka client, no
# scheduler) and sends the same requests: what a replay that bypassed the Kafka protocol could reach.
# Builds nothing: needs BUILD_DIR/factlog, BUILD_DIR/bench/fn_noop, BUILD_DIR/bench/fn_ceiling,
# BUILD_DIR/bench/replay_direct and BUILD_DIR/bench/bench_functions.
# Usage: bench/replay.sh [BUILD_DIR]     env: BENCH_DIR, BACKLOG (2000000), PARTITIONS (4), KEEP
set -euo pipefail
. "$(dirname "$0")/lib.sh"
BUILD=$(cd "${1:-build}" && pwd)
BENCH_DIR=${BENCH_DIR:-bench/results/scratch}
BACKLOG=${BACKLOG:-2000000}
PARTS=${PARTITIONS:-4}
need "$BUILD/factlog" "$BUILD/bench/fn_noop" "$BUILD/bench/fn_ceiling" "$BUILD/bench/replay_direct" \
	"$BUILD/bench/bench_functions"
PID=""
scratch replay PID
read -r KPORT HPORT <<<"$(free_ports 2)"
URL="http://127.0.0.1:$HPORT"
BOOT="127.0.0.1:$KPORT"
echo "# replay from the archive, $(date -u +%Y-%m-%d), $(nproc) cores"
# rate_median LABEL CMD...: runs CMD three times, echoes each RESULT line, sets MEDIAN to the median rate
rate_median() {
	local label=$1 line r rates=()
	shift
	for _ in 1 2 3; do
		line=$("$@")
		echo "$label: $line"
		r=$(sed -n 's/.* rate=\([0-9]*\).*/\1/p' <<<"$line")
		[ -n "$r" ] || { echo "$label printed no rate"; exit 1; }
		rates+=("$r")
	done
	MEDIAN=$(printf '%s\n' "${rates[@]}" | sort -n | sed -n 2p)
	EVENTS=$(sed -n 's/.* events=\([0-9]*\).*/\1/p' <<<"$line")
}
# the limit first, on a quiet machine: the median of three
rate_median ceiling "$BUILD/bench/fn_ceiling" --handler "$BUILD/bench/fn_noop" --events "$BACKLOG" \
	--workers "$PARTS" --batch 10000 --bytes 100
ceiling=$MEDIAN ceiling_events=$EVENTS
"$BUILD/factlog" serve --data "$S/data" --kafka-listen "$BOOT" --http-listen "127.0.0.1:$HPORT" \
	--archive "$S/archive" --archive-check-ms 200 --retention-check-ms 500 --group-initial-delay-ms 0 \
	--log-level warn 2>"$S/server.log" &
PID=$!
for _ in $(seq 100); do curl -sf "$URL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "$URL/healthz" >/dev/null || { echo "factlog did not start"; cat "$S/server.log"; exit 1; }
curl -sf -XPOST "$URL/v1/topics" -d "{\"name\":\"hist\",\"partitions\":$PARTS,\"configs\":{\"segment.bytes\":\"8388608\",
	\"remote.storage.enable\":\"true\",\"local.retention.bytes\":\"1\",\"retention.ms\":\"-1\"}}" >/dev/null

"$BUILD/bench/bench_functions" fill --brokers "$BOOT" --topic hist --count "$BACKLOG" --bytes 100 >"$S/fill.txt"
echo "backlog: $(cat "$S/fill.txt")"
# wait until the archive holds the sealed segments and the local disk dropped them
archived() {
	curl -sf "$URL/v1/topics/hist" | /usr/bin/python3 -c 'import json, sys
ps = json.load(sys.stdin)["partitions"]
print(sum(p["local_log_start"] for p in ps), sum(p["high_watermark"] for p in ps))'
}
for _ in $(seq 300); do
	read -r local_start total <<<"$(archived)"
	[ "$local_start" -gt $((total / 2)) ] && break
	sleep 0.2
done
echo "archived: $local_start of $total events are below the local segments (read from the archive)"

cat >"$S/factlog.yml" <<YML
functions:
  rp:
    run: $BUILD/bench/fn_noop
    scale: { min: $PARTS, max: $PARTS }
    triggers:
      - stream: hist
        start: latest
        ordering: partition
        batch_size: 10000
YML
"$BUILD/factlog" deploy "$S/factlog.yml" --url "$URL" >/dev/null
sleep 1
# Started and followed over HTTP (what `factlog replay` does; the command itself polls only once a second
# off a terminal, which rounded a 1.5 s replay up to 2 s), every 50 ms by one Python process on one
# connection: a curl, grep and sed every 50 ms took about 8% of the two cores from the replay measured
# (1.28-1.38 M events/s with them, 1.65-1.70 M without, 2026-12-06).
read -r state t0 t1 < <(/usr/bin/python3 - "127.0.0.1" "$HPORT" <<'PY'
import http.client, json, sys, time
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=30)
def call(method, body=None):
    c.request(method, "/v1/functions/rp/replay", body=body)
    r = c.getresponse()
    data = r.read()
    if r.status >= 300:
        sys.stderr.write("replay %s: %d %s\n" % (method, r.status, data[:300]))
        print("error 0 0")
        sys.exit(0)
    return json.loads(data)
t0 = time.time()
call("POST", '{"from":"earliest"}')
state = ""
for _ in range(6000):  # 300 s at most
    state = call("GET").get("state", "")
    if state in ("done", "failed", "cancelled"):
        break
    time.sleep(0.05)
print(state, t0, time.time())
PY
)
[ "$state" = done ] || { echo "replay ended $state"; curl -sf "$URL/v1/functions/rp/replay"; exit 1; }
"$BUILD/factlog" functions describe rp --url "$URL" >"$S/describe.json"
# the same archive read directly (the server is idle now): the median of three
rate_median direct "$BUILD/bench/replay_direct" --dir "$(ls -d "$S"/archive/hist-*)" --topic hist \
	--handler "$BUILD/bench/fn_noop" --batch 10000
direct=$MEDIAN direct_events=$EVENTS
/usr/bin/python3 - "$S/describe.json" "$t0" "$t1" "$ceiling" "$ceiling_events" "$direct" "$direct_events" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rp = d.get("replay") or {}
n = rp.get("events_total", 0)
secs = float(sys.argv[3]) - float(sys.argv[2])
rate = n / secs if secs > 0 else 0
print("replay: %d events in %.2f s = %.0f events/s (the replay's own figure: %s/s); state %s; %d invocations"
      % (n, secs, rate, rp.get("rate_per_second"), rp.get("state"), d["invocations"]))
print()
print("| what | measured | target |")
print("|---|---|---|")
print("| replay from the archive, no-op handler, 100-byte events, batches of 10,000 | %.0f events/s | >= 5,000,000 events/s%s |"
      % (rate, "" if rate >= 5e6 else ": not met"))
ceiling, direct = float(sys.argv[4]), float(sys.argv[6])
print("| the protocol alone on this machine (bench/fn_ceiling: the same requests, %s events, no Kafka; median of 3) | %.0f events/s (the replay: %.0f%%) | |"
      % (sys.argv[5], ceiling, 100 * rate / ceiling if ceiling > 0 else 0))
print("| the archive's files read directly (bench/replay_direct: the %s archived events only, same requests, no Kafka client, no scheduler; median of 3) | %.0f events/s | |"
      % (sys.argv[7], direct))
PY
