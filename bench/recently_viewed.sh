#!/usr/bin/env bash
# The recently-viewed example under a wall of traffic (issue 7): `factlog serve` with
# examples/recently-viewed loaded on a scratch data directory, its shelf API, and its click generator
# sending clicks over HTTP and Kafka at once: a quiet rate, then a burst, then quiet again. Every
# CHECK_EVERY-th click is read back with its receipt (read-your-writes), and the generator prints the
# click-to-shelf latency (send -> the API answering with the shelf that holds the click) per phase.
# Builds nothing: needs BUILD_DIR/factlog.
# Usage: bench/recently_viewed.sh [BUILD_DIR]
#   env: BENCH_DIR, PROFILE ("2000:5,50000:5,2000:5": RATE:SECONDS,...), CHECK_EVERY (50), KEEP
set -euo pipefail
. "$(dirname "$0")/lib.sh"
BUILD=$(cd "${1:-build}" && pwd)
BENCH_DIR=${BENCH_DIR:-bench/results/scratch}
PROFILE=${PROFILE:-2000:5,50000:5,2000:5}
CHECK_EVERY=${CHECK_EVERY:-50}
HERE=$(cd "$(dirname "$0")/.." && pwd)/examples/recently-viewed
need "$BUILD/factlog"
PID=""
API_PID=""
scratch recently-viewed API_PID PID
ports=$(free_ports 3)
read -r KPORT HPORT APORT <<<"$ports"
URL="http://127.0.0.1:$HPORT"
"$BUILD/factlog" serve --data "$S/data" --kafka-listen "127.0.0.1:$KPORT" --http-listen "127.0.0.1:$HPORT" \
	--app "$HERE/factlog.yml" --group-initial-delay-ms 0 --log-level warn 2>"$S/server.log" &
PID=$!
for _ in $(seq 100); do curl -sf "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "$URL/readyz" >/dev/null || { echo "factlog did not start"; cat "$S/server.log"; exit 1; }
/usr/bin/python3 "$HERE/api.py" --db "$S/data/functions/shelf/shelf.db" --listen "127.0.0.1:$APORT" \
	--factlog "$URL" >"$S/api.log" 2>&1 &
API_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$APORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
# warm up: one click through to the shelf, so that the figures leave out the function's group joining
r=$(curl -sf -XPOST "$URL/v1/topics/clicks/events" -H 'ce-specversion: 1.0' -H 'ce-id: warm-up' -H 'ce-source: /bench' \
	-H 'ce-type: com.example.product.viewed' -H 'ce-partitionkey: warm-up' -H 'content-type: application/json' \
	-d '{"customer":"warm-up","product":"p0"}')
p=$(echo "$r" | sed 's/.*"partition":\([0-9]*\).*/\1/')
o=$(echo "$r" | sed 's/.*"offset":\([0-9]*\).*/\1/')
curl -sf "http://127.0.0.1:$APORT/shelf/warm-up?after=$p:$o&timeout_ms=30000" >/dev/null ||
	{ echo "the warm-up click did not reach the shelf"; cat "$S/server.log" "$S/api.log"; exit 1; }

echo "# recently-viewed: click-to-shelf latency, $(date -u +%Y-%m-%d), $(nproc) cores"
echo "profile $PROFILE (clicks/s:seconds), half over HTTP (CloudEvents batches of 200), half over Kafka"
echo "(acks=all); every $CHECK_EVERY th click read back through the shelf API with its receipt"
/usr/bin/python3 "$HERE/clicks.py" --http "$URL" --bootstrap "127.0.0.1:$KPORT" --api "http://127.0.0.1:$APORT" \
	--protocol both --profile "$PROFILE" --check-every "$CHECK_EVERY" --check-timeout-ms 60000 \
	>"$S/result.json" 2>"$S/clicks.err" || { cat "$S/clicks.err"; exit 1; }
grep -v '^clicks.py: [0-9]* clicks/s for' "$S/clicks.err" || true
/usr/bin/python3 - "$S/result.json" "$URL" <<'PY'
import json, sys, urllib.request
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
fn = json.loads(urllib.request.urlopen(sys.argv[2] + "/v1/functions/shelf").read())
print()
print("| phase | clicks/s asked | achieved | checks | click-to-shelf p50 | p99 | max |")
print("|---|---|---|---|---|---|---|")
for i, s in enumerate(r.get("segments", [])):
    x = s.get("click_to_shelf_ms", {})
    print("| %d | %d | %d | %d | %s ms | %s ms | %s ms |" % (i + 1, s["rate"], s["clicks"] / s["seconds"],
          x.get("checks", 0), x.get("p50", "-"), x.get("p99", "-"), x.get("max", "-")))
st = fn["stats"]
print()
print("function: %d invocations, %d events, invocation p50 %s ms p99 %s ms, %d cold starts, %d errors"
      % (fn["invocations"], st["events_ok"], st["invocation_ms_p50"], st["invocation_ms_p99"],
         st["cold_starts"], fn["errors"]))
PY
