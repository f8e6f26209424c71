#!/usr/bin/env bash
# Storage engine throughput next to the disk's own limit, measured in the same run on the same disk.
# Alternates (3 rounds): fio writing 1 MiB blocks with fdatasync after each (the raw durable sequential
# bandwidth), then bench_storage appending 1 KiB records in 16 KiB batches with the `always` policy.
# Prints each figure, the medians and the ratio (target: factlog >= 70% of fio).
# Usage: bench/storage.sh [BUILD_DIR]   env: BENCH_DIR (scratch dir on the disk under test), SECONDS_EACH
set -euo pipefail
BUILD=${1:-build}
BENCH_DIR=${BENCH_DIR:-bench/results/scratch}
SECS=${SECONDS_EACH:-5}
mkdir -p "$BENCH_DIR"
S=$(mktemp -d "$BENCH_DIR/run.XXXXXX")
trap 'rm -rf "$S"' EXIT

fio_mbps() { # block size -> MB/s of buffered writes with fdatasync after every block
	fio --name=raw --filename="$S/fio.dat" --rw=write --bs="$1" --size=4G --ioengine=sync --fdatasync=1 \
		--runtime="$SECS" --time_based --output-format=json 2>/dev/null |
		python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["bw_bytes"]/1e6, 1))'
	rm -f "$S/fio.dat"
}
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ { print $2 }') GiB, disk $(df -h "$BENCH_DIR" | awk 'NR==2 { print $1 " " $2 }'), $(uname -r)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
raw=() ours=()
for round in 1 2 3; do
	r=$(fio_mbps 1M)
	o=$("$BUILD/bench/bench_storage" --dir "$S/data" --seconds "$SECS" | tee "$S/out" | sed -n 's/^RESULT_MBPS=//p')
	echo "round $round: fio fdatasync every 1 MiB $r MB/s | factlog storage $o MB/s"
	sed -n 2p "$S/out" | sed 's/^/    /'
	raw+=("$r") ours+=("$o")
done
r64=$(fio_mbps 64k)
mr=$(median "${raw[@]}") mo=$(median "${ours[@]}")
ratio=$(python3 -c "print(round(100 * $mo / $mr))")
echo
echo "| what | MB/s (median of 3) |"
echo "|---|---|"
echo "| disk: fio, fdatasync every 1 MiB | $mr |"
echo "| disk: fio, fdatasync every 64 KiB (once) | $r64 |"
echo "| factlog storage, 1 KiB records, 16 KiB batches, flush=always | $mo |"
echo "| factlog / fio 1 MiB | ${ratio}% (target >= 70%) |"
