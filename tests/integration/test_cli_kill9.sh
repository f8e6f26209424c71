#!/usr/bin/env bash
# Acknowledged means durable, through the real binary: `factlog append` prints a receipt for a record
# only once it is fsynced. A producer is killed with SIGKILL at random moments, five times; after each
# kill every receipted record must read back at its offset with its value, and offsets must stay dense.
set -euo pipefail
F=${1:?usage: test_cli_kill9.sh path/to/factlog}
T=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
D=$T/data
seq 1 2000000 > "$T/input"
"$F" topics create t --partitions 1 --data "$D" > /dev/null

log_end() { "$F" topics list --data "$D" | awk '/partition 0/ { sub("high_watermark=", "", $4); print $4 }'; }

total_receipts=0
for round in 1 2 3 4 5; do
	base=$(log_end)
	"$F" append --topic t --data "$D" --batch $((10 + RANDOM % 200)) < "$T/input" > "$T/receipts" &
	pid=$!
	sleep "0.$((2 + RANDOM % 6))"
	kill -9 "$pid"
	wait "$pid" 2>/dev/null || true
	pid=""
	# Only whole lines are receipts: the kill can cut the last line short (a write that spans two pages of
	# the file stops between them), and "t 0 9" cut from "t 0 912345" would name another record.
	n=$(wc -l < "$T/receipts")
	head -n "$n" "$T/receipts" > "$T/receipts.whole"
	mv "$T/receipts.whole" "$T/receipts"
	[ "$n" -gt 0 ] || { echo "round $round: no receipt before the kill"; exit 1; }
	total_receipts=$((total_receipts + n))
	"$F" dump --topic t --data "$D" > "$T/dump"
	# Offsets are dense from 0.
	awk 'NR - 1 != $1 { print "offset gap at line " NR ": " $0; exit 1 }' "$T/dump"
	# Every receipt "t 0 OFFSET" holds input line OFFSET - base + 1.
	awk -v base="$base" 'NR == FNR { v[$1] = $4; next }
		{ want = $3 - base + 1; if (!($3 in v)) { print "acknowledged offset " $3 " missing"; exit 1 }
		  if (v[$3] != want) { print "offset " $3 " holds " v[$3] ", want " want; exit 1 } }' \
		"$T/dump" "$T/receipts"
	echo "round $round: killed after $n receipts; all present (log end $(log_end))"
done
echo "kill -9: $total_receipts acknowledged records checked over 5 kills"
