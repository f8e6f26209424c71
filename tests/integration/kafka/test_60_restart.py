"""Data and topics survive a clean restart (SIGTERM) and a crash (SIGKILL) of the broker."""
import time

import klib

P = 4


def test_clean_restart_keeps_everything(broker):
    t = "restart-clean"
    klib.ck_create_topic(broker.bootstrap, t, P)
    recs = klib.make_records(25_000)
    first, second = recs[:20_000], recs[20_000:]
    klib.ck_produce_ok(broker.bootstrap, t, first)
    klib.verify(klib.ck_consume(broker.bootstrap, t, len(first)), first, partitions=set(range(P)))

    broker.restart()
    assert klib.wait_partitions(broker.bootstrap, t, P) == list(range(P))
    klib.verify(klib.ck_consume(broker.bootstrap, t, len(first)), first, partitions=set(range(P)))

    # Appends continue after the old log end: offsets stay dense, per-key order holds.
    klib.ck_produce_ok(broker.bootstrap, t, second)
    klib.verify(klib.ck_consume(broker.bootstrap, t, len(recs)), recs, partitions=set(range(P)))

    broker.restart()
    got = klib.kp_consume(broker.bootstrap, t, len(recs))
    klib.verify(got, recs, partitions=set(range(P)))


def test_kill9_keeps_every_acknowledged_record(broker):
    """acks=all and the default flush policy: a record acknowledged before SIGKILL is there after
    the restart, at the offset it was acknowledged with. The kill lands mid-stream."""
    from confluent_kafka import Producer
    t = "restart-kill9"
    klib.ck_create_topic(broker.bootstrap, t, P)
    recs = klib.make_records(40_000, headers=False)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5,
                  "batch.num.messages": 500, "message.timeout.ms": 30000,
                  "queue.buffering.max.messages": 100000, "socket.timeout.ms": 10000})
    acked = {}
    failed = []

    def cb(err, msg):
        i = klib.index_of_value(msg.value())
        if err is None:
            acked[i] = (msg.partition(), msg.offset())
        else:
            failed.append(i)

    killed_at = None
    deadline = time.monotonic() + 90
    for start in range(0, len(recs), 1000):
        for r in recs[start:start + 1000]:
            while True:
                try:
                    p.produce(t, r.value, r.key, on_delivery=cb, timestamp=r.ts)
                    break
                except BufferError:
                    assert time.monotonic() < deadline, "producer queue full until the deadline"
                    p.poll(0.05)
            p.poll(0)
        # Pace the stream: at most ~3,000 records outstanding, so the kill lands mid-stream.
        while len(p) > 3000 and time.monotonic() < deadline:
            p.poll(0.01)
        if killed_at is None and len(acked) >= 8_000:
            killed_at = len(acked)
            broker.kill9_restart()
    left = p.flush(max(1, deadline - time.monotonic()))
    assert killed_at is not None, "only %d records acknowledged: never got to the kill" % len(acked)
    assert left == 0, "%d records neither acknowledged nor failed" % left
    assert len(acked) > killed_at, "nothing acknowledged after the restart (failed: %d)" % len(
        failed)

    assert klib.wait_partitions(broker.bootstrap, t, P) == list(range(P))
    hw = {}
    c = klib.ck_consumer(broker.bootstrap)
    try:
        from confluent_kafka import TopicPartition
        for part in range(P):
            hw[part] = c.get_watermark_offsets(TopicPartition(t, part), timeout=10,
                                               cached=False)[1]
    finally:
        c.close()
    got = klib.ck_consume(broker.bootstrap, t, sum(hw.values()))
    problems = klib.check_dense_offsets(got, set(range(P)))
    at = {(g.partition, g.offset): g for g in got}
    want = {r.i: r for r in recs}
    missing = []
    for i, (part, off) in acked.items():
        g = at.get((part, off))
        if g is None or g.value != want[i].value or g.key != want[i].key or g.ts != want[i].ts:
            missing.append((i, part, off, g))
    if missing:
        problems.append("%d of %d acknowledged records missing or different at their offset "
                        "(killed after %d acks), e.g. %r" % (len(missing), len(acked), killed_at,
                                                             missing[:5]))
    assert not problems, "\n".join(problems)

    # And the broker keeps working after the crash recovery: a clean restart and a full re-read.
    broker.restart()
    got2 = klib.ck_consume(broker.bootstrap, t, len(got))
    assert sorted((g.partition, g.offset, g.value) for g in got2) == \
        sorted((g.partition, g.offset, g.value) for g in got)
