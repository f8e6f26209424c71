"""Edge cases: Fetch long-poll timing and offsets, Metadata topic lists, null/empty keys and values,
large records, tiny fetch sizes, concurrent producers."""
import threading
import time

import klib
import kwire


def _fetch(port, topic, partition, offset, max_wait_ms, timeout=10):
    with kwire.connect(port, timeout=timeout) as s:
        t0 = time.monotonic()
        s.sendall(kwire.fetch_request(31, topic, partition, offset, max_wait_ms=max_wait_ms))
        p = kwire.recv_frame(s)
        elapsed = time.monotonic() - t0
    assert p is not None, "connection closed instead of a Fetch answer"
    corr, err, hw, lso, records = kwire.parse_fetch_v4(p)
    assert corr == 31
    return err, hw, lso, records, elapsed


def test_fetch_empty_partition_waits_max_wait(broker):
    klib.ck_create_topic(broker.bootstrap, "edge-empty", 1)
    err, hw, lso, records, elapsed = _fetch(broker.port, b"edge-empty", 0, 0, 600)
    assert (err, hw, lso) == (0, 0, 0), "empty partition: error %d hw %d lso %d" % (err, hw, lso)
    assert records is not None, "records sent as null (kafka-python crashes on it): send b''"
    assert records == b""
    assert 0.45 <= elapsed <= 2.0, "Fetch with max_wait 600 ms answered after %.2f s" % elapsed


def test_fetch_long_poll_wakes_on_produce(broker):
    klib.ck_create_topic(broker.bootstrap, "edge-wake", 1)
    timer = threading.Timer(0.4, lambda: klib.ck_produce_ok(
        broker.bootstrap, "edge-wake", klib.make_records(3, nkeys=1), conf={"linger.ms": 0}))
    timer.start()
    try:
        err, hw, lso, records, elapsed = _fetch(broker.port, b"edge-wake", 0, 0, 8000, timeout=15)
    finally:
        timer.join(20)
    assert err == 0 and hw == 3 and lso == 3, "error %d hw %d lso %d" % (err, hw, lso)
    assert kwire.batches(records), "no batch in the answer"
    assert elapsed < 3.0, "Fetch (max_wait 8 s) answered %.2f s after it was sent; data came " \
        "after 0.4 s (long-poll must wake on produce)" % elapsed


def test_fetch_offsets(broker):
    """An acknowledged append is readable at once, from another connection, at a mid-batch offset
    (the answer holds the batch with that offset); offset = HWM is empty; past HWM is error 1."""
    parts = 8
    klib.ck_create_topic(broker.bootstrap, "edge-offsets", parts)
    ts = klib.now_ms()
    problems = []
    with kwire.connect(broker.port) as s:
        for part in range(parts):
            s.sendall(kwire.produce_request(41 + part, b"edge-offsets", part, kwire.record_batch(
                [b"r%d" % i for i in range(10)], ts)))
            p = kwire.recv_frame(s)
            assert p is not None, "connection closed instead of a Produce answer"
            assert kwire.parse_produce_v3(p) == (41 + part, 0, 0), \
                "Produce answer (corr, error, base offset) %r, want (%d, 0, 0)" % (
                    kwire.parse_produce_v3(p), 41 + part)
            # Right after the ack, on a new connection (maybe another event-loop thread).
            err, hw, _, records, _ = _fetch(broker.port, b"edge-offsets", part, 5, 100)
            bs = kwire.batches(records or b"")
            if (err, hw) != (0, 10) or not (bs and bs[0][0] <= 5 <= bs[0][0] + bs[0][1]):
                problems.append("partition %d: Fetch at offset 5 right after the ack of offsets "
                                "0-9: error %d hw %d batches %r (want error 0, hw 10, the batch "
                                "holding offset 5)" % (part, err, hw, bs))
    assert not problems, "\n".join(problems)
    err, hw, _, records, elapsed = _fetch(broker.port, b"edge-offsets", 0, 10, 300)
    assert (err, hw, records) == (0, 10, b""), "Fetch at the HWM: error %d hw %d records %r" % (
        err, hw, records)
    err, hw, _, _, elapsed = _fetch(broker.port, b"edge-offsets", 0, 11, 3000)
    assert err == 1, "Fetch past the HWM: error %d, want 1 (OFFSET_OUT_OF_RANGE)" % err
    assert elapsed < 1.5, "OFFSET_OUT_OF_RANGE took %.2f s (should not wait max_wait)" % elapsed


def test_metadata_topic_lists(broker):
    klib.ck_create_topic(broker.bootstrap, "edge-md-a", 1)
    klib.ck_create_topic(broker.bootstrap, "edge-md-b", 2)
    with kwire.connect(broker.port) as s:
        s.sendall(kwire.metadata_request(51, None, version=1))
        all_v1 = kwire.parse_metadata_v1_topics(kwire.recv_frame(s))
        s.sendall(kwire.metadata_request(52, [], version=1))
        none_v1 = kwire.parse_metadata_v1_topics(kwire.recv_frame(s))
        s.sendall(kwire.metadata_request(53, [b"edge-md-missing"], version=4))
        missing = kwire.parse_metadata_v4_topics(kwire.recv_frame(s))
    assert {"edge-md-a", "edge-md-b"} <= set(all_v1), "null topic list (v1) = all: got %r" % all_v1
    assert none_v1 == {}, "empty topic list (v1) = no topics: got %r" % none_v1
    assert missing == {"edge-md-missing": 3}, \
        "v4 allow_auto_topic_creation=false for a missing topic: %r, want error 3" % missing
    assert klib.ck_partitions(broker.bootstrap, "edge-md-missing") is None, \
        "Metadata v4 with allow_auto_topic_creation=false created the topic"


def test_null_and_empty_keys_values(broker):
    from confluent_kafka import Producer
    t = "edge-null"
    klib.ck_create_topic(broker.bootstrap, t, 1)
    cases = [(None, b"v-null-key"), (b"", b"v-empty-key"), (b"k-null-value", None),
             (b"k-empty-value", b""), (None, None), (b"k\x00bin", bytes(range(256)))]
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    errs = []
    for k, v in cases:
        p.produce(t, v, k, partition=0, headers=[("n", None), ("e", b"")],
                  on_delivery=lambda e, m: e and errs.append(str(e)))
    assert p.flush(15) == 0 and not errs, errs
    got = sorted(klib.ck_consume(broker.bootstrap, t, len(cases)), key=lambda g: g.offset)
    assert [(g.key, g.value) for g in got] == cases
    for g in got:
        assert g.headers == [("n", None), ("e", b"")], "headers %r" % g.headers


def test_large_records_and_tiny_fetch_size(broker):
    """900 KB records round-trip; a consumer whose fetch size is far below one record still makes
    progress (the broker returns at least one whole batch, KIP-74)."""
    t = "edge-large"
    klib.ck_create_topic(broker.bootstrap, t, 1)
    big = [klib.Rec(i, b"big", i, b"big|%d|%d|" % (i, i) + bytes([i]) * 900_000, None, None)
           for i in range(6)]
    klib.ck_produce_ok(broker.bootstrap, t, big, conf={"linger.ms": 0,
                                                       "message.max.bytes": 1_000_000})
    got = klib.ck_consume(broker.bootstrap, t, len(big))
    assert [g.value for g in sorted(got, key=lambda g: g.offset)] == [r.value for r in big]
    got = klib.kp_consume(broker.bootstrap, t, len(big), max_partition_fetch_bytes=1024,
                          fetch_max_bytes=1024, timeout=30)
    assert [g.value for g in sorted(got, key=lambda g: g.offset)] == [r.value for r in big], \
        "kafka-python with 1 KiB fetch sizes read %d of %d large records" % (len(got), len(big))


def test_concurrent_producers(broker):
    """Four producers at once into one 2-partition topic: nothing lost or duplicated, each
    producer's per-key order kept, offsets dense."""
    t = "edge-concurrent"
    klib.ck_create_topic(broker.bootstrap, t, 2)
    per = 15_000
    sets = []
    for w in range(4):
        recs = klib.make_records(per, nkeys=50)
        for r in recs:  # distinct keys and record numbers per producer
            r.i += w * per
            r.key = b"w%d-%s" % (w, r.key)
            r.value = b"%s|%d|%d|x" % (r.key, r.seq, r.i)
        sets.append(recs)
    failures = []

    def work(recs):
        try:
            klib.ck_produce_ok(broker.bootstrap, t, recs, conf={"linger.ms": 2})
        except AssertionError as e:  # reported by the main thread
            failures.append(str(e))

    threads = [threading.Thread(target=work, args=(s,)) for s in sets]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not any(th.is_alive() for th in threads), "a producer thread did not finish in 120 s"
    assert not failures, failures
    allrecs = [r for s in sets for r in s]
    got = klib.ck_consume(broker.bootstrap, t, len(allrecs))
    klib.verify(got, allrecs, partitions={0, 1})


def test_consume_from_middle_offset(broker):
    """A real client that starts reading in the middle of a fresh log gets the rest of it."""
    t = "edge-middle"
    klib.ck_create_topic(broker.bootstrap, t, 1)
    recs = klib.make_records(100, nkeys=1)
    klib.ck_produce_ok(broker.bootstrap, t, recs, partition_of=lambda r: 0)
    got = klib.ck_consume(broker.bootstrap, t, 50, partitions=[0], start=50, timeout=20)
    assert [(g.offset, g.value) for g in got] == [(50 + j, r.value) for j, r in
                                                  enumerate(recs[50:])], \
        "assign at offset 50 of 100: read offsets %r" % [g.offset for g in got][:10]
