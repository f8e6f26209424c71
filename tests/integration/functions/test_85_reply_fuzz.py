"""Handler replies fuzzed through live workers: a worker (fuzz_handler.py) answers most batches with
malformed replies (not JSON, wrong ids and types, bad `failed` entries and emits, NUL bytes, invalid
UTF-8, deep nesting, oversized lines, silence, death in mid-line). factlog keeps running, keeps its
memory, and every event ends either processed (a valid ok reply) or dead-lettered, never both, never
lost. Under `make test` this also runs against the ASan+UBSan binary."""
import os

from conftest import wait_until

HERE = os.path.dirname(os.path.abspath(__file__))

APP = """
streams:
  in: {{ partitions: 3 }}
  out: {{ partitions: 1 }}
  in-dlq: {{ partitions: 1 }}
functions:
  fuzzed:
    run: env OUT={out} SEED={seed} /usr/bin/python3 {handler}
    timeout: 400ms
    scale: {{ min: 1, max: 3 }}
    triggers:
      - stream: in
        start: earliest
        ordering: key
        concurrency: 2
        batch_size: 8
        retry: {{ attempts: 3, base: 1ms, max: 10ms }}
        on_failure: in-dlq
"""


def test_fuzzed_replies(factlog_ledger):
    lg = factlog_ledger
    out = os.path.join(lg.root, "ok.txt")
    lg.start(APP.format(out=out, seed=85, handler=os.path.join(HERE, "fuzz_handler.py")),
             {"in": 3, "out": 1, "in-dlq": 1})
    n = 300
    receipts = lg.produce("in", [("k%d" % (i % 11), {"i": i}, None) for i in range(n)])
    events = {(p, o) for _, p, o in receipts}

    def ok_set():
        if not os.path.exists(out):
            return set()
        with open(out) as f:
            return {tuple(int(x) for x in line.split()) for line in f if line.endswith("\n") and line[0] != "#"}

    def settled():
        fn = lg.describe("fuzzed")
        parts = fn["triggers"][0]["partitions"]
        return (fn["stats"]["events_in"] >= n and len(parts) == 3 and fn["lag"] == 0 and
                fn["queued_batches"] == 0 and fn["busy"] == 0 and fn)
    fn = wait_until(settled, 180, "every event settled", interval=0.5)
    dl = lg.consume_all("in-dlq", n, timeout=10)
    dead = set()
    for m in dl:
        h = {k: v.decode() for k, v in m.headers()}
        assert h["factlog-function"] == "fuzzed" and h["factlog-attempts"] == "3" and h["factlog-error"], h
        dead.add((int(h["factlog-partition"]), int(h["factlog-offset"])))
    ok = ok_set()
    assert len(dl) == len(dead), "an event was dead-lettered twice"
    assert not (ok & dead), "processed and dead-lettered: %s" % sorted(ok & dead)[:5]
    lost = sorted(events - ok - dead)
    if lost:
        with open(out) as f:
            tried = [line.strip() for line in f if line.startswith("#") and " %d/%d" % lost[0] in line + " "]
    assert not lost, "lost: %s; the handler's garbage for %s: %s" % (lost[:10], lost[0], tried)
    assert ok and dead, "the mix is degenerate: %d ok, %d dead" % (len(ok), len(dead))
    st = fn["stats"]
    assert st["dead_lettered"] == len(dead) and st["crashes"] + st["timeouts"] > 0, st
    assert lg.server.get("/healthz").status == 200
    rss_kb = int([l for l in open("/proc/%d/status" % lg.server.proc.pid) if l.startswith("VmRSS:")][0].split()[1])
    assert rss_kb < 1024 * 1024, "factlog holds %d MiB" % (rss_kb // 1024)
    print("fuzzed replies: %d events, %d processed, %d dead-lettered; stats %s" % (n, len(ok), len(dead), st))
