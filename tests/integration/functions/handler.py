#!/usr/bin/python3
"""A worker for the functions tests: NDJSON requests on stdin, one reply line each on stdout.

It appends one JSON line per processed event to $OUT (pid, invocation id, function, topic, partition, offset,
key, data, attempt, time) and is steered by environment variables and by the events' data:
  DELAY_MS=N        sleep a random 0..N ms per event (to shuffle timing under concurrency)
  data.poison=true  raise (the whole batch fails) when this event is reached, after the earlier ones
  data.crash=true   SIGKILL itself at this event, once per $CRASH_MARK file (a worker killed mid-batch)
  data.fail_once=true  report this event as failed (partial batch failure) the first time it is seen
  data.hang=true    hang (sleep 60 s) at this event, once per $CRASH_MARK file (a worker that times out)
  EMIT=TOPIC        emit one event per input event to TOPIC, with cause = its index
  GATE=FILE         while FILE does not exist, wait 0.2 s before each batch (a slow function)
"""
import json
import os
import random
import signal
import sys
import time

OUT = os.environ["OUT"]
DELAY_MS = int(os.environ.get("DELAY_MS", "0"))
EMIT = os.environ.get("EMIT")
CRASH_MARK = os.environ.get("CRASH_MARK", "")
GATE = os.environ.get("GATE")
FN = os.environ.get("FACTLOG_FUNCTION", "?")
seen_fail = set()


def handle(req):
    if GATE and not os.path.exists(GATE):
        time.sleep(0.2)
    out = open(OUT, "a")
    failed, emit = [], []
    try:
        for i, ev in enumerate(req["events"]):
            data = ev.get("data")
            if not isinstance(data, dict):
                data = {}
            if DELAY_MS:
                time.sleep(random.uniform(0, DELAY_MS) / 1000.0)
            if data.get("poison"):
                raise RuntimeError("poison event at offset %d" % ev["offset"])
            if data.get("crash") and CRASH_MARK and not os.path.exists(CRASH_MARK):
                open(CRASH_MARK, "w").close()
                out.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            if data.get("hang") and CRASH_MARK and not os.path.exists(CRASH_MARK):
                open(CRASH_MARK, "w").close()
                time.sleep(60)
            if data.get("fail_once") and ev["id"] not in seen_fail:
                seen_fail.add(ev["id"])
                failed.append(i)
                continue
            out.write(json.dumps({"pid": os.getpid(), "inv": req["id"], "fn": FN, "topic": ev.get("topic"),
                                  "partition": ev["partition"], "offset": ev["offset"],
                                  "key": ev.get("partitionkey"), "data": data, "attempt": req["attempt"],
                                  "t": time.time()}) + "\n")
            out.flush()
            if EMIT:
                emit.append({"topic": EMIT, "type": "com.example.emitted", "cause": i,
                             "partitionkey": ev.get("partitionkey") or "none",
                             "datacontenttype": "application/json", "data": {"from": ev["offset"]}})
    except RuntimeError as e:
        return {"id": req["id"], "status": "error", "error": str(e)}
    finally:
        out.close()
    reply = {"id": req["id"], "status": "ok", "emit": emit}
    if failed:
        reply["failed"] = failed
    return reply


def main():
    for line in sys.stdin:
        reply = handle(json.loads(line))
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
