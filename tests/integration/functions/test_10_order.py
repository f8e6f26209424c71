"""ordering: key under concurrency 16 with random handler delays: per-key order, every event once."""
import os

from conftest import handler_cmd, read_out, wait_until

APP = """
streams:
  orders: {{ partitions: 4 }}
functions:
  keyed:
    run: {run}
    scale: {{ min: 0, max: 16 }}
    triggers:
      - stream: orders
        start: earliest
        ordering: key
        concurrency: 16
        batch_size: 8
"""


def test_key_order_under_concurrency(ledger):
    out = os.path.join(ledger.root, "out.jsonl")
    ledger.start(APP.format(run=handler_cmd(out, DELAY_MS=3)), {"orders": 4})
    n, keys = 2000, 40
    records = [("k%02d" % (i % keys), {"seq": i // keys}, None) for i in range(n)]
    receipts = ledger.produce("orders", records)
    wait_until(lambda: len(read_out(out)) >= n, 120, "%d events processed" % n, interval=0.2)
    rows = read_out(out)
    assert len(rows) == n, "without failures every event is processed exactly once"
    by_key = {}
    for r in rows:
        by_key.setdefault(r["key"], []).append(r["data"]["seq"])
    assert len(by_key) == keys
    for k, seqs in by_key.items():
        assert seqs == list(range(n // keys)), "key %s processed out of order: %s" % (k, seqs[:20])
    # several workers ran at once (different keys in parallel)
    assert len({r["pid"] for r in rows}) > 1
    # the committed position reaches the end of every partition
    ends = {}
    for _, p, o in receipts:
        ends[p] = max(ends.get(p, -1), o + 1)
    wait_until(lambda: ledger.committed("keyed", "orders") == ends, 30, "commits %s" % ends, interval=0.2)
