"""A worker killed in the middle of a batch: it is restarted and the batch retried; nothing is lost."""
import os

from conftest import handler_cmd, read_out, wait_until

APP = """
streams:
  orders: {{ partitions: 1 }}
  orders-dlq: {{ partitions: 1 }}
functions:
  crashy:
    run: {run}
    triggers:
      - stream: orders
        start: earliest
        ordering: partition
        batch_size: 20
        retry: {{ attempts: 3, base: 10ms, max: 100ms }}
        on_failure: orders-dlq
"""


def test_worker_killed_mid_batch(ledger):
    out = os.path.join(ledger.root, "out.jsonl")
    mark = os.path.join(ledger.root, "crashed")
    ledger.start(APP.format(run=handler_cmd(out, CRASH_MARK=mark)), {"orders": 1, "orders-dlq": 1})
    n = 300
    ledger.produce("orders", [("k", {"i": i, "crash": i == 150}, None) for i in range(n)])
    wait_until(lambda: len({r["offset"] for r in read_out(out)}) >= n, 60, "all events processed", interval=0.2)
    assert os.path.exists(mark), "the worker did crash"
    rows = read_out(out)
    assert {r["offset"] for r in rows} == set(range(n))
    assert len({r["pid"] for r in rows}) >= 2, "a new worker took over"
    assert ledger.consume_all("orders-dlq", 1, timeout=2) == []
    if ledger.kind == "factlog":
        st = ledger.describe("crashy")["stats"]
        assert st["crashes"] >= 1 and st["cold_starts"] >= 2


HANG = """
streams:
  orders: {{ partitions: 1 }}
functions:
  hanger:
    run: {run}
    timeout: 1s
    triggers:
      - stream: orders
        start: earliest
        ordering: partition
        batch_size: 10
        retry: {{ attempts: 3, base: 10ms, max: 100ms }}
"""


def test_worker_timeout_is_killed_and_retried(ledger):
    out = os.path.join(ledger.root, "out.jsonl")
    mark = os.path.join(ledger.root, "hung")
    ledger.start(HANG.format(run=handler_cmd(out, CRASH_MARK=mark)), {"orders": 1})
    n = 60
    ledger.produce("orders", [("k", {"i": i, "hang": i == 25}, None) for i in range(n)])
    wait_until(lambda: len({r["offset"] for r in read_out(out)}) >= n, 60, "all events processed", interval=0.2)
    assert os.path.exists(mark), "the worker did hang"
    assert {r["offset"] for r in read_out(out)} == set(range(n))
    if ledger.kind == "factlog":
        st = ledger.describe("hanger")["stats"]
        assert st["timeouts"] >= 1
