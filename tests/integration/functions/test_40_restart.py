"""The runtime stopped (cleanly, or with kill -9) mid-stream resumes where it left off: no event skipped."""
import os

import pytest

from conftest import handler_cmd, read_out, wait_until

APP = """
streams:
  orders: {{ partitions: 3 }}
functions:
  resumer:
    run: {run}
    triggers:
      - stream: orders
        start: earliest
        ordering: key
        concurrency: 4
        batch_size: 10
"""


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_restart_mid_stream(ledger, how):
    out = os.path.join(ledger.root, "out.jsonl")
    ledger.start(APP.format(run=handler_cmd(out, DELAY_MS=4)), {"orders": 3})
    n = 1500
    receipts = ledger.produce("orders", [("k%d" % (i % 30), {"i": i}, None) for i in range(n)])
    wait_until(lambda: len(read_out(out)) >= 200, 60, "200 events processed", interval=0.1)
    if how == "sigterm":
        ledger.stop_functions()
    else:
        ledger.kill_functions()
    before = len(read_out(out))
    assert before < n, "the stop came too late to test anything"
    ledger.start_functions()
    wait_until(lambda: {(r["partition"], r["offset"]) for r in read_out(out)} ==
               {(p, o) for _, p, o in receipts}, 120, "every event processed", interval=0.2)
    rows = read_out(out)
    if how == "sigterm":
        # a clean stop commits what was done: at most the batches in flight are processed again
        assert len(rows) - n <= 3 * 4 * 10
    by_key = {}
    for r in rows:
        by_key.setdefault(r["key"], [])
        if r["data"]["i"] not in by_key[r["key"]]:
            by_key[r["key"]].append(r["data"]["i"])
    for k, seq in by_key.items():
        assert seq == sorted(seq), "key %s out of order across the restart" % k
