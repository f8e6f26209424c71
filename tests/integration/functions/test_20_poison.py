"""A poison event is bisected out of its batch and dead-lettered; every other event is processed in order."""
import os

from conftest import handler_cmd, read_out, wait_until

APP = """
streams:
  orders: {{ partitions: 2 }}
  orders-dlq: {{ partitions: 1 }}
functions:
  bisect:
    run: {run}
    triggers:
      - stream: orders
        start: earliest
        ordering: partition
        batch_size: 50
        retry: {{ attempts: 2, base: 10ms, max: 50ms }}
        on_failure: orders-dlq
"""


def test_poison_bisected_and_dead_lettered(ledger):
    out = os.path.join(ledger.root, "out.jsonl")
    ledger.start(APP.format(run=handler_cmd(out)), {"orders": 2, "orders-dlq": 1})
    n = 600
    poison = {100, 333, 501}
    records = [("k%d" % (i % 7), {"i": i, "poison": i in poison}, None) for i in range(n)]
    receipts = ledger.produce("orders", records)
    where = {i: (p, o) for i, (_, p, o) in enumerate(receipts)}
    dlq = ledger.consume_all("orders-dlq", len(poison), timeout=60)
    assert len(dlq) == len(poison), ledger.log_tail()
    got = set()
    for m in dlq:
        h = {k: v.decode() for k, v in m.headers()}
        assert h["factlog-topic"] == "orders"
        assert h["factlog-function"] == "bisect"
        assert h["factlog-attempts"] == "2"
        assert "poison event" in h["factlog-error"]
        got.add((int(h["factlog-partition"]), int(h["factlog-offset"])))
        assert m.value() is not None and b'"poison": true' in m.value()
    assert got == {where[i] for i in poison}
    wait_until(lambda: len({(r["partition"], r["offset"]) for r in read_out(out)}) >= n - len(poison), 60,
               "all other events processed", interval=0.2)
    rows = read_out(out)
    seen = {(r["partition"], r["offset"]) for r in rows}
    assert seen == {where[i] for i in range(n) if i not in poison}
    # first processing per partition in offset order (re-processing after a failure is allowed: at least once)
    first = {}
    for r in rows:
        first.setdefault(r["partition"], [])
        if r["offset"] not in first[r["partition"]]:
            first[r["partition"]].append(r["offset"])
    for p, offs in first.items():
        assert offs == sorted(offs), "partition %d out of order" % p
    # nothing more arrives in the dead-letter topic
    assert len(ledger.consume_all("orders-dlq", len(poison) + 1, timeout=3)) == len(poison)
    if ledger.kind == "factlog":
        st = ledger.describe("bisect")["stats"]
        assert st["dead_lettered"] == 3 and st["bisections"] >= 3


AGED = """
streams:
  orders: {{ partitions: 1 }}
  orders-dlq: {{ partitions: 1 }}
functions:
  aged:
    run: {run}
    triggers:
      - stream: orders
        start: earliest
        batch_size: 10
        retry: {{ attempts: 1000, base: 20ms, max: 50ms }}
        max_age: 1s
        on_failure: orders-dlq
"""


def test_max_age_dead_letters_before_the_attempts_run_out(factlog_ledger):
    lg = factlog_ledger
    out = os.path.join(lg.root, "out.jsonl")
    lg.start(AGED.format(run=handler_cmd(out)), {"orders": 1, "orders-dlq": 1})
    lg.produce("orders", [("k", {"i": 0, "poison": True}, None), ("k", {"i": 1}, None)])
    dlq = lg.consume_all("orders-dlq", 1, timeout=30)
    assert len(dlq) == 1
    h = {k: v.decode() for k, v in dlq[0].headers()}
    assert 1 <= int(h["factlog-attempts"]) < 1000, h  # stopped by age, long before the attempts ran out
    wait_until(lambda: any(r["data"]["i"] == 1 for r in read_out(out)), 20, "the next event")
