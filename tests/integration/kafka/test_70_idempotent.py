"""Idempotent producer across a broker restart: every record exactly once, in order.

Selected alone with: run.sh BIN -m idempotent (or pytest -m idempotent).
"""
import time

import pytest

import klib

P = 4


@pytest.mark.idempotent
def test_confluent_idempotent_producer_across_restart(broker):
    from confluent_kafka import Producer
    t = "idempotent"
    klib.ck_create_topic(broker.bootstrap, t, P)
    recs = klib.make_records(30_000)
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True,
                  "linger.ms": 5, "batch.num.messages": 500, "message.timeout.ms": 60000,
                  "queue.buffering.max.messages": 100000, "socket.timeout.ms": 10000})
    acked = {}
    errors = []

    def cb(err, msg):
        i = klib.index_of_value(msg.value())
        if err is None:
            acked[i] = (msg.partition(), msg.offset())
        else:
            errors.append((i, str(err)))

    restarted_at = None
    deadline = time.monotonic() + 90
    for start in range(0, len(recs), 1000):
        for r in recs[start:start + 1000]:
            while True:
                try:
                    p.produce(t, r.value, r.key, headers=r.headers, timestamp=r.ts,
                              on_delivery=cb)
                    break
                except BufferError:
                    assert time.monotonic() < deadline, "producer queue full until the deadline"
                    p.poll(0.05)
            p.poll(0)
        # Pace the stream: at most ~3,000 records outstanding, so the restart lands mid-stream.
        while len(p) > 3000 and time.monotonic() < deadline:
            p.poll(0.01)
        if restarted_at is None and len(acked) >= 5_000:
            restarted_at = len(acked)
            broker.restart()  # while the rest of the stream is queued and in flight
    left = p.flush(max(1, deadline - time.monotonic()))
    assert restarted_at is not None, "never reached 5,000 acknowledgements (%d)" % len(acked)
    assert left == 0, "%d records unacknowledged after flush" % left
    assert not errors, "idempotent producer: %d delivery errors, e.g. %r" % (len(errors),
                                                                            errors[:5])
    assert len(acked) == len(recs)

    got = klib.ck_consume(broker.bootstrap, t, len(recs))
    # verify(): no duplicates, nothing missing, per-key order, dense offsets.
    klib.verify(got, recs, partitions=set(range(P)))
    where = {klib.index_of_value(g.value): (g.partition, g.offset) for g in got}
    wrong = [(i, acked[i], where[i]) for i in acked if acked[i] != where[i]]
    assert not wrong, "%d records read at another offset than acknowledged, e.g. %r" % (
        len(wrong), wrong[:5])
