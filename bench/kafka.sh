#!/usr/bin/env bash
# Kafka-protocol throughput and latency of factlog next to the disk's own durable bandwidth, in one run on
# one disk: fio (fdatasync every 1 MiB) on the scratch dir, then bench_kafka (librdkafka) against a broker
# serving a temp data dir in that same scratch dir with --flush always:
#   acks=all produce with 1 and 2 producers, acks=1 produce, acks=all at a paced 100 MB/s for latency
#   (after fio's own fdatasync latency at that load),
#   consume what was produced (page cache) with 1 and 2 consumers, read it again with 1 and 2 raw Fetch
#   readers (bench/fetch_raw.c: the broker side, no record decoding), produce with a raw producer
#   (bench/produce_raw.c: ready-made batches, the broker side) and produce + consume concurrently.
# Prints each figure, the targets and the ratio to fio as a markdown table. Builds nothing: needs
# BUILD_DIR/factlog and BUILD_DIR/bench/bench_kafka (librdkafka-dev installed when meson set up BUILD_DIR).
# Usage: bench/kafka.sh [BUILD_DIR]
#   env: BENCH_DIR (scratch dir on the disk under test), SECONDS_EACH (per step, default 10),
#        PARTITIONS (default 4), RECORD_BYTES (default 1024), LATENCY_MBPS (default 100)
set -euo pipefail
BUILD=${1:-build}
BENCH_DIR=${BENCH_DIR:-bench/results/scratch}
SECS=${SECONDS_EACH:-10}
PARTS=${PARTITIONS:-4}
REC=${RECORD_BYTES:-1024}
LAT_MBPS=${LATENCY_MBPS:-100}
FIO_SECS=5
BENCH="$BUILD/bench/bench_kafka"
for f in "$BUILD/factlog" "$BENCH" "$BUILD/bench/fetch_raw" "$BUILD/bench/produce_raw"; do
	[ -x "$f" ] || { echo "missing $f: build first (bench_kafka needs librdkafka-dev at meson setup)" >&2; exit 1; }
done
command -v fio >/dev/null || { echo "fio is not installed" >&2; exit 1; }

mkdir -p "$BENCH_DIR"
S=$(mktemp -d "$BENCH_DIR/kafka.XXXXXX")
PID=""
stop_server() {
	[ -n "$PID" ] || return 0
	kill -TERM "$PID" 2>/dev/null || true
	for _ in $(seq 100); do # 10 s to flush and seal, then SIGKILL
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$PID" 2>/dev/null; then
		echo "factlog (pid $PID) did not stop within 10 s of SIGTERM: SIGKILL" >&2
		kill -KILL "$PID" 2>/dev/null || true
	fi
	wait "$PID" 2>/dev/null || true
	PID=""
}
cleanup() {
	stop_server
	rm -rf "$S"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
T0=$(date +%s)

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ { print $2 }') GiB, disk $(df -h "$BENCH_DIR" | awk 'NR==2 { print $1 " " $2 }'), $(uname -r)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ), $SECS s per step, $PARTS partitions, $REC B records, flush=always"

# (1) The disk's raw durable sequential bandwidth, as bench/storage.sh measures it.
fio_json=$(fio --name=raw --filename="$S/fio.dat" --rw=write --bs=1M --size=4G --ioengine=sync --fdatasync=1 \
	--runtime="$FIO_SECS" --time_based --output-format=json 2>/dev/null)
rm -f "$S/fio.dat"
FIO=$(python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["bw_bytes"]/1e6, 1))' <<<"$fio_json")
echo "fio: fdatasync every 1 MiB: $FIO MB/s"
# (1b) Buffered writes into the page cache (2 GiB, no fsync): what acks=1 can reach at most. On a VM whose
# guest hands freed memory back to its host (free page reporting: this Firecracker VM does so within
# seconds), writes into pages the host took back run at the host's fault speed: the same 3 GB dd ran at
# 392, 630 and 2,500 MB/s back to back on 2026-12-06 (docs/benchmarks.md).
t0=$(date +%s.%N)
dd if=/dev/zero of="$S/pc.dat" bs=1M count=2048 status=none
t1=$(date +%s.%N)
rm -f "$S/pc.dat"
PC=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 2048 * 1048576 / 1e6 / (b - a) }')
echo "page cache: buffered write of 2 GiB: $PC MB/s"

# The broker picks a free port itself (port 0) and logs it: no race with other listeners.
"$BUILD/factlog" serve --data "$S/data" --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --auto-create-topics --flush always \
	>"$S/server.log" 2>&1 &
PID=$!
PORT=""
for _ in $(seq 100); do
	PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$S/server.log" | head -1)
	[ -n "$PORT" ] && break
	kill -0 "$PID" 2>/dev/null || break
	sleep 0.1
done
[ -n "$PORT" ] || { echo "factlog did not start:" >&2; cat "$S/server.log" >&2; exit 1; }
echo "factlog pid $PID on 127.0.0.1:$PORT, data in $S/data"

# runwith TOOL NAME ARGS...: one run of bench/TOOL (bench_kafka, fetch_raw or produce_raw) against the
# broker; its output is shown and kept in $S/NAME.out.
runwith() {
	local tool=$1 name=$2
	shift 2
	echo
	echo "## $name: $tool $*"
	# The previous step's dirty pages are written back first: else their writeback competes with this
	# step's fsyncs (a latency step after the acks=1 step measured the disk catching up, p99 850 ms).
	sync
	timeout 180 "$BUILD/bench/$tool" --brokers "127.0.0.1:$PORT" --partitions "$PARTS" "$@" \
		>"$S/$name.out" 2>&1 || echo "$tool exited with status $?" >>"$S/$name.out"
	cat "$S/$name.out"
}
run() { local name=$1; shift; runwith bench_kafka "$name" --record-bytes "$REC" "$@"; }
# raw: Fetch answers checked batch by batch, no record decoded; rawp: ready-made batches, pipelined.
raw() { local name=$1; shift; runwith fetch_raw "$name" --seconds 60 "$@"; }
rawp() { local name=$1; shift; runwith produce_raw "$name" --record-bytes "$REC" "$@"; }
# get NAME KEY: a value from the RESULT line of run NAME ("?" when missing).
get() {
	local v
	v=$(sed -n "s/^RESULT .* $2=\([^ ]*\).*/\1/p" "$S/$1.out" | tail -1)
	echo "${v:-?}"
}
pct() { python3 -c "import sys; a, b = sys.argv[1:]; print(f'{100 * float(a) / float(b):.0f}%')" "$1" "$2" 2>/dev/null || echo "?"; }
ok() { python3 -c "import sys; print('yes' if eval(sys.argv[1]) else '**no**')" "$1" 2>/dev/null || echo "?"; }

run all1 --produce --topic all1 --acks all --producers 1 --seconds "$SECS"                           # (2)
run all2 --produce --topic all2 --acks all --producers 2 --seconds "$SECS"
run acks1 --produce --topic acks1 --acks 1 --producers 1 --seconds "$SECS"                           # (3)
# (4) The disk's own fdatasync latency at the latency steps' load, just before them: PARTS fio writers of
# 16 KiB, each fdatasync'd, LAT_MBPS in all. An acks=all answer waits for at least one such fdatasync, so
# its p99 cannot beat this one's.
sync
fl_json=$(fio --name=fsynclat --directory="$S" --size=256m --bs=16k --rw=write --numjobs="$PARTS" \
	--rate="$((LAT_MBPS / PARTS))m" --fdatasync=1 --ioengine=psync --runtime="$SECS" --time_based --group_reporting \
	--output-format=json 2>/dev/null)
rm -f "$S"/fsynclat.*
read -r FL50 FL99 FL999 < <(python3 -c 'import json, sys
p = json.load(sys.stdin)["jobs"][0]["sync"]["lat_ns"]["percentile"]
print(" ".join("%.3f" % (p[k] / 1e6) for k in ("50.000000", "99.000000", "99.900000")))' <<<"$fl_json")
echo "fio: fdatasync latency at $LAT_MBPS MB/s ($PARTS writers of 16 KiB): p50 $FL50 / p99 $FL99 / p99.9 $FL999 ms"
run lat0 --produce --topic lat0 --acks all --rate-mbps "$LAT_MBPS" --linger-ms 0 --seconds "$SECS"
run lat5 --produce --topic lat5 --acks all --rate-mbps "$LAT_MBPS" --linger-ms 5 --seconds "$SECS"
run cons1 --consume --topic all2 --consumers 1 --seconds 30                                          # (5)
run cons2 --consume --topic all2 --consumers 2 --seconds 30
raw raw1 --topic all2 --threads 1                                                                    # (5b)
raw raw2 --topic all2 --threads 2
rawp rawk1 --topic rawk1 --acks 1 --seconds "$SECS"                                                  # (5c)
rawp rawall --topic rawall --acks -1 --seconds "$SECS"
rawp rawlat --topic rawlat --acks -1 --rate-mbps "$LAT_MBPS" --batch-records 16 --seconds "$SECS"
run conc --concurrent --topic conc --acks all --producers 1 --consumers 1 --seconds "$SECS"         # (6)
stop_server

a1=$(get all1 produce_mbps) a2=$(get all2 produce_mbps) k1=$(get acks1 produce_mbps)
l0=$(get lat0 p99_ms) l5=$(get lat5 p99_ms)
c1=$(get cons1 consume_mbps) c2=$(get cons2 consume_mbps)
lat() { echo "$(get "$1" produce_mbps) MB/s delivered; p50 $(get "$1" p50_ms) / p99 $(get "$1" p99_ms) / p99.9 $(get "$1" p999_ms) ms"; }
thr() { echo "$(get "$1" produce_mbps) MB/s, $(get "$1" records_per_s) rec/s (p99 $(get "$1" p99_ms) ms incl. client queueing)"; }
echo
echo "| what | result | vs fio 1 MiB | target | met |"
echo "|---|---|---|---|---|"
echo "| disk: fio, fdatasync every 1 MiB, ${FIO_SECS} s | $FIO MB/s | 100% | | |"
echo "| page cache: buffered write of 2 GiB (dd, no fsync) | $PC MB/s | $(pct "$PC" "$FIO") | (the ceiling for acks=1) | |"
echo "| produce acks=all, 1 producer | $(thr all1) | $(pct "$a1" "$FIO") | >= 400 MB/s and >= 50% of fio | $(ok "$a1 >= 400 and $a1 >= 0.5 * $FIO") |"
echo "| produce acks=all, 2 producers | $(thr all2) | $(pct "$a2" "$FIO") | >= 400 MB/s and >= 50% of fio | $(ok "$a2 >= 400 and $a2 >= 0.5 * $FIO") |"
echo "| produce acks=1, 1 producer | $(thr acks1) | $(pct "$k1" "$FIO") | >= 1000 MB/s | $(ok "$k1 >= 1000") |"
echo "| disk: fio fdatasync latency at $LAT_MBPS MB/s ($PARTS writers of 16 KiB, each synced), just before | p50 $FL50 / p99 $FL99 / p99.9 $FL999 ms | | (an acks=all answer waits for one) | |"
echo "| acks=all at $LAT_MBPS MB/s offered, linger.ms=0 | $(lat lat0) | | p99 < 2 ms | $(ok "$l0 < 2") |"
echo "| acks=all at $LAT_MBPS MB/s offered, linger.ms=5 | $(lat lat5) | | p99 < 2 ms | $(ok "$l5 < 2") |"
echo "| consume (page cache), 1 consumer | $c1 MB/s ($(get cons1 consumed) records, complete=$(get cons1 complete)) | $(pct "$c1" "$FIO") | several GB/s (>= 2000 MB/s) | $(ok "$c1 >= 2000") |"
echo "| consume (page cache), 2 consumers | $c2 MB/s total, slowest $(get cons2 consume_mbps_each_min) (complete=$(get cons2 complete)) | $(pct "$c2" "$FIO") | several GB/s (>= 2000 MB/s) | $(ok "$c2 >= 2000") |"
echo "| raw Fetch reader (replica-style: batches CRC-checked, records not decoded), 1 connection | $(get raw1 raw_mbps) MB/s (complete=$(get raw1 complete), bad=$(get raw1 bad)) | $(pct "$(get raw1 raw_mbps)" "$FIO") | several GB/s (>= 2000 MB/s) | $(ok "$(get raw1 raw_mbps) >= 2000") |"
echo "| raw Fetch reader, 2 connections | $(get raw2 raw_mbps) MB/s total (complete=$(get raw2 complete), bad=$(get raw2 bad)) | $(pct "$(get raw2 raw_mbps)" "$FIO") | several GB/s (>= 2000 MB/s) | $(ok "$(get raw2 raw_mbps) >= 2000") |"
echo "| raw producer (ready-made 256-record batches, 4 requests in flight), acks=1 | $(get rawk1 produce_mbps) MB/s, request p50 $(get rawk1 p50_ms) / p99 $(get rawk1 p99_ms) ms | $(pct "$(get rawk1 produce_mbps)" "$FIO") | (>= 1000 MB/s is the librdkafka target) | |"
echo "| raw producer, acks=all | $(get rawall produce_mbps) MB/s, request p50 $(get rawall p50_ms) / p99 $(get rawall p99_ms) ms | $(pct "$(get rawall produce_mbps)" "$FIO") | | |"
echo "| raw producer, acks=all at $LAT_MBPS MB/s offered (16-record batches per partition) | $(get rawlat produce_mbps) MB/s; request p50 $(get rawlat p50_ms) / p99 $(get rawlat p99_ms) / p99.9 $(get rawlat p999_ms) ms | | (p99 < 2 ms is the librdkafka target) | $(ok "$(get rawlat p99_ms) < 2") |"
echo "| concurrent: 1 producer acks=all + 1 consumer | produce $(get conc produce_mbps) MB/s, consume $(get conc consume_mbps) MB/s (complete=$(get conc complete)) | $(pct "$(get conc produce_mbps)" "$FIO") | | |"
echo

# Anything that looks wrong: client errors, failed deliveries, gaps, incomplete reads, broker warnings.
problems=$(cat "$S"/*.out | grep -vE '^(RESULT |produce: |consume: |fetch_raw: [0-9]+ threads read |produce_raw: [0-9]+ threads, |created topic |topic .* already exists)' |
	sed 's/^%\([0-7]\)|[0-9.]*|/%\1|/' | sort | uniq -c | sort -rn | head -20 || true)
bad=$(grep -hE 'complete=0|failed=[1-9]|gaps=[1-9]|bad=[1-9]|errors=[1-9]|msg_errors=[1-9]|client_errors=[1-9]' "$S"/*.out || true)
srv=$(grep -E ' (WARN|ERROR|FATAL) ' "$S/server.log" | sort | uniq -c | sort -rn | head -20 || true)
grep -q 'stopped cleanly' "$S/server.log" || srv="$srv"$'\n'"server did not log 'stopped cleanly'"
if [ -n "$problems$bad$srv" ]; then
	echo "problems seen:"
	[ -n "$problems" ] && echo "$problems"
	[ -n "$bad" ] && echo "$bad"
	[ -n "$srv" ] && echo "server log:" && echo "$srv"
else
	echo "no client errors, failed deliveries, offset gaps or server warnings"
fi
echo "total time: $(($(date +%s) - T0)) s"
