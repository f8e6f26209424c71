#!/bin/sh
# A factlog function in POSIX shell with jq: counts events per partition key.
#
# The protocol (docs/functions.md): factlog writes one request line per batch on stdin,
#   {"id": "...", "function": "...", "attempt": 1, "events": [CloudEvent, ...]}
# and reads one reply line on stdout,
#   {"id": "<the same id>", "status": "ok", "emit": [{"topic": ..., "cause": INDEX, ...}, ...]}
# stdout carries replies only; logs go to stderr, which factlog appends to the function's log.
#
# For every event this worker adds one to the count of its partitionkey and emits a com.example.counted
# event with the running count to $COUNTS_TOPIC (default "counts"), keyed like its cause. The counts are a
# JSON object kept in a shell variable (this process's memory), so the app file runs exactly one worker.
# Each batch is one jq run: the old counts and the request go in on stdin; out come three lines: the new
# counts, the reply, and a line for the log.
set -u
topic=${COUNTS_TOPIC:-counts}
name=${FACTLOG_FUNCTION:-handler.sh}
counts='{}'
nl='
'
prog='
input as $counts | input as $req
| reduce ($req.events | to_entries[]) as $e ({counts: $counts, emit: []};
    ($e.value.partitionkey // "(none)") as $k
    | .counts[$k] = ((.counts[$k] // 0) + 1)
    | .emit += [{topic: $topic, cause: $e.key, type: "com.example.counted"}
                + (if $e.value.partitionkey == null then {} else {partitionkey: $e.value.partitionkey} end)
                + {data: {key: $k, count: .counts[$k]}}])
| (.counts | tojson),
  ({id: $req.id, status: "ok", emit: .emit} | tojson),
  "\($name): \($req.id) attempt \($req.attempt): \($req.events | length) event(s), \(.counts | length) key(s) counted"
'
while IFS= read -r line; do
	if out=$(printf '%s\n%s\n' "$counts" "$line" | jq -n -r --arg topic "$topic" --arg name "$name" "$prog") &&
		[ "${out#*"$nl"*"$nl"}" != "$out" ]; then
		counts=${out%%"$nl"*}
		rest=${out#*"$nl"}
		reply=${rest%%"$nl"*}
		msg=${rest#*"$nl"}
	else
		# jq failed: the batch fails as a whole (counts unchanged) and factlog retries it
		id=$(printf '%s\n' "$line" | jq -r '.id // empty' 2>/dev/null) || id=
		[ -n "$id" ] || { echo "$name: unreadable request, exiting" >&2; exit 1; }
		reply=$(jq -n -c --arg id "$id" '{id: $id, status: "error", error: "jq could not process the batch"}')
		msg="$name: $id failed: jq could not process the batch"
	fi
	printf '%s\n' "$reply"
	printf '%s\n' "$msg" >&2
done
