"""Workers scale with the backlog and down to zero when idle; each start is a counted cold start."""
import os

from conftest import handler_cmd, read_out, wait_until

APP = """
streams:
  orders: {{ partitions: 4 }}
functions:
  elastic:
    run: {run}
    scale: {{ min: 0, max: 4, idle: 300ms }}
    triggers:
      - stream: orders
        start: earliest
        ordering: key
        concurrency: 4
        batch_size: 5
"""


def test_scale_to_zero_and_back(factlog_ledger):
    lg = factlog_ledger
    out = os.path.join(lg.root, "out.jsonl")
    lg.start(APP.format(run=handler_cmd(out, DELAY_MS=5)), {"orders": 4})
    assert lg.describe("elastic")["workers"] == 0, "min 0: nothing runs before there is work"
    lg.produce("orders", [("k%d" % i, {"i": i}, None) for i in range(400)])
    peak = wait_until(lambda: lg.describe("elastic")["workers"] >= 2 and lg.describe("elastic")["workers"],
                      30, "workers to scale up")
    assert peak <= 4
    wait_until(lambda: len(read_out(out)) >= 400, 60, "400 processed", interval=0.2)
    wait_until(lambda: lg.describe("elastic")["workers"] == 0, 10, "scale to zero")
    cold = lg.describe("elastic")["stats"]["cold_starts"]
    assert cold >= 2
    lg.produce("orders", [("k", {"i": 1000}, None)])
    wait_until(lambda: len(read_out(out)) >= 401, 30, "the event after idling", interval=0.1)
    st = lg.describe("elastic")["stats"]
    assert st["cold_starts"] == cold + 1 and st["last_cold_start_ms"] >= 0
