"""Emitted events reach their topic before the input counts as done, with provenance: the causing
topic/partition/offset, the correlation id and the W3C traceparent continued from the input."""
import os
import time

from conftest import handler_cmd, read_out, wait_until

APP = """
streams:
  clicks: {{ partitions: 2 }}
  derived: {{ partitions: 2 }}
functions:
  emitter:
    run: {run}
    triggers:
      - stream: clicks
        start: earliest
        batch_size: 10
"""

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_emits_with_provenance(ledger):
    out = os.path.join(ledger.root, "out.jsonl")
    ledger.start(APP.format(run=handler_cmd(out, EMIT="derived")), {"clicks": 2, "derived": 2})
    n = 50
    recs = []
    for i in range(n):
        recs.append(("c%d" % (i % 5), {"i": i}, [
            ("ce_specversion", b"1.0"), ("ce_id", b"click-%d" % i), ("ce_source", b"/web"),
            ("ce_type", b"com.example.click"), ("ce_correlationid", b"session-%d" % (i % 3)),
            ("ce_traceparent", ("00-%s-%016x-01" % (TRACE, i + 1)).encode())]))
    receipts = ledger.produce("clicks", recs)
    where = {"click-%d" % i: (p, o) for i, (_, p, o) in enumerate(receipts)}
    got = ledger.consume_all("derived", n, timeout=60)
    assert len(got) == n, ledger.log_tail()
    seen = set()
    for m in got:
        h = {k: v.decode() for k, v in m.headers()}
        cause = h["ce_causationid"]
        p, o = where[cause]
        assert h["ce_causationtopic"] == "clicks"
        assert int(h["ce_causationpartition"]) == p and int(h["ce_causationoffset"]) == o
        i = int(cause.split("-")[1])
        assert h["ce_correlationid"] == "session-%d" % (i % 3)
        tp = h["ce_traceparent"].split("-")
        assert tp[0] == "00" and tp[1] == TRACE and tp[2] != "%016x" % (i + 1) and tp[3] == "01"
        assert h["ce_type"] == "com.example.emitted" and h["ce_source"] == "/factlog/functions/emitter"
        assert m.key().decode() == "c%d" % (i % 5)
        assert b'"from"' in m.value()
        seen.add(cause)
    assert len(seen) == n
    assert len(read_out(out)) >= n


NOWHERE = """
streams:
  clicks: {{ partitions: 1 }}
functions:
  stuck:
    run: {run}
    triggers:
      - stream: clicks
        start: earliest
        batch_size: 1
        concurrency: 5
        retry: {{ attempts: 1 }}
"""


def test_a_stop_does_not_wait_out_emits_that_cannot_be_delivered(factlog_ledger):
    """The handler emits to a topic that does not exist (auto-creation is off), so its invocations wait for
    delivery reports that would come only after librdkafka's message timeout (30 s). A stop gives such
    emits a few seconds, then fails them: the server exits cleanly well before the timeout, and since
    the events are not done nothing was committed past them: after the restart they are processed again.
    One event per batch and one attempt: a failure the stop causes must not count as the event's last
    attempt (it would be discarded and committed past)."""
    lg = factlog_ledger
    out = os.path.join(lg.root, "out.jsonl")
    lg.start(NOWHERE.format(run=handler_cmd(out, EMIT="nowhere")), {"clicks": 1})
    lg.produce("clicks", [("k%d" % i, {"i": i}, []) for i in range(5)])
    # each worker holds one event, waiting for its emit: at least one is in flight
    wait_until(lambda: len(read_out(out)) >= 1, 30, "the handler to get an event", interval=0.1)
    time.sleep(0.5)
    before = {r["offset"] for r in read_out(out)}
    t0 = time.monotonic()
    lg.stop_functions()  # raises unless the exit is clean (status 0, within the fixture's 15 s)
    took = time.monotonic() - t0
    assert took < 12, "the stop waited %.1f s for undeliverable emits" % took
    n = len(read_out(out))
    lg.start_functions()  # nothing was committed past them: the same events come again
    wait_until(lambda: before <= {r["offset"] for r in read_out(out)[n:]}, 30,
               "offsets %s processed again after the restart" % sorted(before), interval=0.2)
