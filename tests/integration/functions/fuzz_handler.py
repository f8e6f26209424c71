#!/usr/bin/env python3
"""A hostile worker for the reply-fuzzing test: to each request it answers, at random (seeded by $SEED and
the request id), either a valid reply that marks the whole batch ok (then it appends the batch's
"partition offset" pairs to $OUT, one per line, before writing the reply) or one of many malformed
replies: bytes that are not JSON, truncated or oversized lines, wrong types, wrong ids, bad `failed`
entries, bad emits, NUL bytes, invalid UTF-8, deep nesting, two replies, no reply at all (the timeout),
or an exit in mid-line. factlog must survive every one of them, retry, and dead-letter what never
succeeds."""
import json
import os
import random
import sys

OUT = os.environ["OUT"]
SEED = int(os.environ.get("SEED", "1"))
OK_RATE = float(os.environ.get("OK_RATE", "0.35"))


def garbage(rng, req):
    rid = req["id"]
    n = len(req["events"])
    choices = [
        lambda: b"not json at all\n",
        lambda: b"{\n",
        lambda: b"[1, 2, 3]\n",
        lambda: b"null\n",
        lambda: b'"a string"\n',
        lambda: json.dumps({"status": "ok"}).encode() + b"\n",  # no id
        lambda: json.dumps({"id": rid + "x", "status": "ok"}).encode() + b"\n",
        lambda: json.dumps({"id": 12345, "status": "ok"}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "status": "maybe"}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "status": 1}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "status": "error"}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "status": "error", "error": "x" * 100000}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "failed": [n + 5]}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "failed": [-1]}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "failed": ["no-such-id"]}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "failed": [{"a": 1}]}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "failed": "0"}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "failed": [0.5]}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "failed": [2 ** 70]}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "emit": "x"}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "emit": [{"data": 1}]}).encode() + b"\n",  # no topic
        lambda: json.dumps({"id": rid, "emit": [{"topic": ""}]}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "emit": [{"topic": "out", "cause": n + 3}]}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "emit": [{"topic": "out", "Bad-Name": "v"}]}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "emit": [dict({"topic": "out"}, **{"a%d" % i: i for i in range(40)})]}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "emit": [{"topic": "out", "data_base64": "!!!"}]}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "emit": [{"topic": "out", "x": {"nested": 1}}]}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "emit": [{"topic": "no/such topic"}]}).encode() + b"\n",
        lambda: json.dumps({"id": rid, "emit": [{"topic": "out", "x": 1.5e308 * 10}]}).encode() + b"\n",
        lambda: b'{"id": "' + rid.encode() + b'", "status": "ok", "x": "\x00"}\n',
        lambda: b'{"id": "' + rid.encode() + b'", "status": "\xff\xfe"}\n',
        lambda: b'{"id": "' + rid.encode() + b'", "emit": [' + b"[" * 5000 + b"]" * 5000 + b"]}\n",
        lambda: b'{"id": "' + rid.encode() + b'", "status": "ok"}{"id": "x"}\n',
        lambda: b"\n",
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) + b"\n",
        lambda: json.dumps({"id": rid, "status": "ok"}).encode()[:rng.randrange(1, 20)] + b"\n",
        lambda: None,   # no reply: the timeout
        lambda: "exit",  # die in mid-line
    ]
    k = rng.randrange(len(choices))
    return k, choices[k]()


def main():
    out = open(OUT, "a")
    for line in sys.stdin.buffer:
        req = json.loads(line)
        rng = random.Random("%d-%s-%d" % (SEED, req["id"], req["attempt"]))
        if rng.random() < OK_RATE:
            for ev in req["events"]:
                out.write("%d %d\n" % (ev["partition"], ev["offset"]))
            out.flush()
            sys.stdout.buffer.write(json.dumps({"id": req["id"], "status": "ok"}).encode() + b"\n")
            sys.stdout.flush()
            continue
        k, g = garbage(rng, req)
        out.write("# %s attempt %d garbage %d: %s\n" % (req["id"], req["attempt"], k,
                  " ".join("%d/%d" % (ev["partition"], ev["offset"]) for ev in req["events"])))
        out.flush()
        if g is None:
            continue
        if g == "exit":
            sys.stdout.buffer.write(b'{"id": "')
            sys.stdout.flush()
            os._exit(3)
        sys.stdout.buffer.write(g)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
