"""The example handlers of examples/functions (Python, Node, POSIX shell + jq) speak the protocol: run as
the shipped factlog.yml wires them (with absolute paths), each counts the clicks per key exactly, in order,
and emits its counts with provenance; their stderr lands in the function's log."""
import json
import os
import random
import shutil

import pytest

from conftest import wait_until

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
EXAMPLES = os.path.join(ROOT, "examples", "functions")
FUNCTIONS = {  # function name -> (the run: line in the example, the same with absolute paths)
    "count-python": ("python3 handler.py", "/usr/bin/python3 %s/handler.py" % EXAMPLES),
    "count-node": ("node handler.js", "%s %s/handler.js" % (shutil.which("node") or "node", EXAMPLES)),
    "count-sh": ("sh handler.sh", "/bin/sh %s/handler.sh" % EXAMPLES),
}


def example_app():
    """The example's factlog.yml with every handler referenced by absolute path."""
    with open(os.path.join(EXAMPLES, "factlog.yml")) as f:
        text = f.read()
    for rel, absolute in FUNCTIONS.values():
        assert text.count("run: %s" % rel) == 1, "examples/functions/factlog.yml no longer runs `%s`" % rel
        text = text.replace("run: %s" % rel, "run: %s" % absolute)
    return text


def test_example_handlers_count_per_key(factlog_ledger):
    for tool in ("node", "jq"):
        if shutil.which(tool) is None:
            pytest.fail("%s is not installed (scripts/install-deps installs it)" % tool, pytrace=False)
    lg = factlog_ledger
    lg.start(example_app(), {"clicks": 3, "counts": 3})
    keys = ["user-%d" % k for k in range(5)]
    n = 30
    rnd = random.Random(95)  # uneven, interleaved keys; the same every run
    records = [(rnd.choice(keys), {"i": i, "page": "/p%d" % (i % 3)}, None) for i in range(n)]
    receipts = lg.produce("clicks", records)
    # where each key's clicks are, in the order they were produced (one key: one partition, rising offsets)
    clicks_of = {}
    for key, p, o in receipts:
        clicks_of.setdefault(key.decode(), []).append((p, o))
    assert len(clicks_of) == len(keys) and all(len(v) >= 2 for v in clicks_of.values())

    total = n * len(FUNCTIONS)
    got = lg.consume_all("counts", total, timeout=60)
    assert len(got) == total, "%d of %d counts\n%s" % (len(got), total, lg.log_tail())
    by_fn = {name: {} for name in FUNCTIONS}
    for m in got:
        h = {k: v.decode() for k, v in m.headers()}
        fn = h["ce_source"].rsplit("/", 1)[1]
        assert h["ce_source"] == "/factlog/functions/" + fn and fn in by_fn, h
        assert h["ce_type"] == "com.example.counted" and h["ce_specversion"] == "1.0" and h["ce_id"]
        assert h["content-type"] == "application/json"
        data = json.loads(m.value())
        key = data["key"]
        assert m.key().decode() == key, "a count is keyed like its cause"
        # provenance: the click that caused it (a plain Kafka record: its id is TOPIC-PARTITION-OFFSET)
        assert h["ce_causationtopic"] == "clicks"
        cp, co = int(h["ce_causationpartition"]), int(h["ce_causationoffset"])
        assert h["ce_causationid"] == "clicks-%d-%d" % (cp, co)
        assert h["ce_correlationid"] == h["ce_causationid"], "the cause had no correlationid: its id"
        tp = h["ce_traceparent"].split("-")
        assert len(tp) == 4 and tp[0] == "00" and len(tp[1]) == 32 and len(tp[2]) == 16 and tp[3] == "01", tp
        by_fn[fn].setdefault(key, []).append((data["count"], (cp, co)))

    for fn, per_key in by_fn.items():
        assert sorted(per_key) == sorted(clicks_of), "%s counted keys %s" % (fn, sorted(per_key))
        for key, seen in per_key.items():
            # exactly 1..n per key, in order, each count caused by the key's click at that position
            want = [(j + 1, where) for j, where in enumerate(clicks_of[key])]
            assert seen == want, "%s, key %s: %s, want %s\n%s" % (fn, key, seen, want, lg.log_tail())

    # nothing more is emitted (each click counted once)
    assert len(lg.consume_all("counts", total + 1, timeout=3)) == total
    for fn in FUNCTIONS:
        wait_until(lambda: lg.describe(fn)["stats"]["events_ok"] == n, 10, "%s done with %d clicks" % (fn, n))
        d = lg.describe(fn)
        assert d["errors"] == 0 and d["stats"]["emitted"] == n and d["workers"] == 1, d
        # one stderr line per batch (written just after the reply), in the function's log

        def handler_lines():
            r = lg.server.get("/v1/functions/%s/logs?lines=1000" % fn)
            assert r.status == 200, r
            return [line for line in r.body.decode().splitlines() if line.startswith(fn + ": ")]
        wait_until(lambda: len(handler_lines()) == d["invocations"], 10,
                   "%s: one log line per invocation (%d)" % (fn, d["invocations"]))
        first = handler_lines()[0]
        assert first.startswith("%s: %s-0-1 attempt 1: " % (fn, fn)) and "counted" in first, first
    # read-your-writes on a function's group: the last click is committed
    key, p, o = receipts[-1]
    w = lg.server.get("/v1/groups/count-sh/wait?topic=clicks&partition=%d&offset=%d&timeout_ms=10000" % (p, o))
    assert w.status == 200 and w.json()["caught_up"], w
