#!/usr/bin/env python3
"""A factlog function in Python (standard library only): counts events per partition key.

The protocol (docs/functions.md): factlog writes one request line per batch on stdin,
    {"id": "...", "function": "...", "attempt": 1, "events": [CloudEvent, ...]}
and reads one reply line on stdout,
    {"id": "<the same id>", "status": "ok", "emit": [{"topic": ..., "cause": INDEX, ...}, ...]}
stdout carries replies only; anything for humans goes to stderr, which factlog appends to the
function's log (`factlog functions logs NAME`).

For every event this worker adds one to the count of its partitionkey and emits a com.example.counted
event with the running count to the topic $COUNTS_TOPIC (default "counts"), keyed like its cause.
The counts live in this process's memory, so the app file runs exactly one worker (scale: {min: 1, max: 1}).
"""
import json
import os
import sys

TOPIC = os.environ.get("COUNTS_TOPIC", "counts")
NAME = os.environ.get("FACTLOG_FUNCTION", "handler.py")
counts = {}


def handle(req):
    """The reply to one request. The counts change only when the whole batch succeeded."""
    new = dict(counts)
    emit = []
    for i, ev in enumerate(req["events"]):
        key = ev.get("partitionkey")  # the Kafka record key; absent when the record has none
        name = key if key is not None else "(none)"
        new[name] = new.get(name, 0) + 1
        out = {"topic": TOPIC, "cause": i, "type": "com.example.counted",
               "data": {"key": name, "count": new[name]}}
        if key is not None:
            out["partitionkey"] = key  # same key, so one key's counts stay in order on one partition
        emit.append(out)
    counts.clear()
    counts.update(new)
    return {"id": req["id"], "status": "ok", "emit": emit}


def main():
    for line in sys.stdin:
        req = json.loads(line)
        try:
            reply = handle(req)
        except Exception as e:  # the whole batch failed: factlog retries it (or bisects it)
            reply = {"id": req["id"], "status": "error", "error": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if reply["status"] == "ok":
            sys.stderr.write("%s: %s attempt %d: %d event(s), %d key(s) counted\n"
                             % (NAME, req["id"], req["attempt"], len(reply["emit"]), len(counts)))
        else:
            sys.stderr.write("%s: %s attempt %d failed: %s\n" % (NAME, req["id"], req["attempt"], reply["error"]))
        sys.stderr.flush()


if __name__ == "__main__":
    main()
