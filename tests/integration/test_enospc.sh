#!/usr/bin/env bash
# A full disk fails the append with a clear error, leaves no partial batch, and appends work again once
# space is freed. Uses a 2 MiB tmpfs mounted by the test; skipped (exit 77) where it cannot mount one.
set -euo pipefail
F=${1:?usage: test_enospc.sh path/to/factlog}
if [ "$(id -u)" -ne 0 ]; then echo "SKIP: mounting a size-limited tmpfs needs root"; exit 77; fi
M=$(mktemp -d)
if ! mount -t tmpfs -o size=2m tmpfs "$M" 2>"$M.err"; then
	echo "SKIP: cannot mount a tmpfs here: $(cat "$M.err")"; rm -rf "$M" "$M.err"; exit 77
fi
T=$(mktemp -d)
cleanup() { umount "$M" 2>/dev/null || true; rm -rf "$M" "$M.err" "$T"; }
trap cleanup EXIT
D=$M/data
"$F" topics create t --partitions 1 --data "$D" > /dev/null

set +e
seq 1 1000000 | "$F" append --topic t --data "$D" --batch 100 > "$T/receipts" 2> "$T/err"
rc=$?
set -e
[ "$rc" -ne 0 ] || { echo "append into a full disk succeeded"; exit 1; }
grep -q "No space left on device" "$T/err" || { echo "no clear error:"; cat "$T/err"; exit 1; }
acked=$(wc -l < "$T/receipts")
[ "$acked" -gt 1000 ] || { echo "only $acked records fitted"; exit 1; }
echo "full disk after $acked acknowledged records: $(head -1 "$T/err")"

mount -o remount,size=8m "$M"
"$F" dump --topic t --data "$D" > "$T/dump"
n=$(wc -l < "$T/dump")
[ "$n" -eq "$acked" ] || { echo "dump has $n records, $acked acknowledged"; exit 1; }
grep -q "corrupt" "$T/dump" && { echo "a partial batch was left behind"; exit 1; }
awk 'NR - 1 != $1 || $4 != NR { print "bad record at line " NR ": " $0; exit 1 }' "$T/dump"

seq 1 1000 | "$F" append --topic t --data "$D" > "$T/receipts2"
[ "$(wc -l < "$T/receipts2")" -eq 1000 ] || { echo "append after freeing space failed"; exit 1; }
"$F" dump --topic t --data "$D" | awk 'NR - 1 != $1 { print "offset gap at " NR; exit 1 }'
echo "appends work again after space was freed"
