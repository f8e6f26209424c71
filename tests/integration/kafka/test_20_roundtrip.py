"""Per client: a 4-partition topic, N keyed records with headers and timestamps, read back whole.

verify() checks every key, value, header and timestamp, one partition per key, per-key order by
offset (values carry a per-key sequence number) and dense offsets from 0 in every partition.
"""
import klib

PARTITIONS = 4


def test_confluent_kafka_roundtrip_100k(broker):
    n = 100_000
    topic = "rt-confluent"
    klib.ck_create_topic(broker.bootstrap, topic, PARTITIONS)
    recs = klib.make_records(n)
    reports = klib.ck_produce_ok(broker.bootstrap, topic, recs)
    got = klib.ck_consume(broker.bootstrap, topic, n)
    per_p = klib.verify(got, recs, partitions=set(range(PARTITIONS)))
    assert len(per_p) == PARTITIONS, "records landed in partitions %s only" % sorted(per_p)
    # The offsets the broker acknowledged are the offsets the records are read back at.
    where = {klib.index_of_value(g.value): (g.partition, g.offset) for g in got}
    wrong = [(i, reports[i], where[i]) for i in reports if reports[i] != where[i]]
    assert not wrong, "%d records read at another offset than acknowledged, e.g. %r" % (
        len(wrong), wrong[:5])


def test_kcat_roundtrip_100k(broker):
    n = 100_000
    topic = "rt-kcat"
    klib.ck_create_topic(broker.bootstrap, topic, PARTITIONS)
    recs = klib.make_records(n, headers=False)
    hdrs = [("source", "kcat"), ("h2", "second")]
    t0 = klib.now_ms()
    klib.kcat_produce(broker.bootstrap, topic, recs, headers=hdrs)
    t1 = klib.now_ms()
    for r in recs:  # kcat -H puts the same headers on every record
        r.headers = [(k, v.encode()) for k, v in hdrs]
    got = klib.kcat_consume(broker.bootstrap, topic)
    # kcat cannot set per-record timestamps: librdkafka stamps them when produce() is called.
    per_p = klib.verify(got, recs, ts_exact=False, ts_window=(t0 - 1000, t1 + 1000),
                        partitions=set(range(PARTITIONS)))
    assert len(per_p) == PARTITIONS, "records landed in partitions %s only" % sorted(per_p)


def test_kafka_python_roundtrip_20k(broker):
    from kafka.admin import KafkaAdminClient, NewTopic
    n = 20_000
    topic = "rt-kafka-python"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)], timeout_ms=10000)
    finally:
        admin.close()
    klib.wait_partitions(broker.bootstrap, topic, PARTITIONS)
    recs = klib.make_records(n)
    acked = klib.kp_produce(broker.bootstrap, topic, recs, acks="all")
    got = klib.kp_consume(broker.bootstrap, topic, n)
    per_p = klib.verify(got, recs, partitions=set(range(PARTITIONS)))
    assert len(per_p) == PARTITIONS, "records landed in partitions %s only" % sorted(per_p)
    where = {klib.index_of_value(g.value): (g.partition, g.offset) for g in got}
    wrong = [(i, acked[i], where[i]) for i in acked if acked[i] != where[i]]
    assert not wrong, "%d records read at another offset than acknowledged, e.g. %r" % (
        len(wrong), wrong[:5])


def test_kafka_python_version_pinned_roundtrip(broker):
    """kafka-python with api_version pinned (no version probe), then with the probe, both ways."""
    topic = "rt-kafka-python-pinned"
    klib.ck_create_topic(broker.bootstrap, topic, PARTITIONS)
    recs = klib.make_records(2_000)
    klib.kp_produce(broker.bootstrap, topic, recs, acks="all", api_version=(2, 5, 0))
    got = klib.kp_consume(broker.bootstrap, topic, len(recs), api_version=(2, 5, 0))
    klib.verify(got, recs, partitions=set(range(PARTITIONS)))
    got = klib.kp_consume(broker.bootstrap, topic, len(recs))
    klib.verify(got, recs, partitions=set(range(PARTITIONS)))


def test_kafkajs_roundtrip_20k(broker):
    n = 20_000
    topic = "rt-kafkajs"
    recs = klib.make_records(n)
    res = klib.kjs(broker.bootstrap, [
        {"op": "createTopics", "topics": [{"topic": topic, "partitions": PARTITIONS}]},
        {"op": "fetchTopicMetadata", "topics": [topic]},
        {"op": "produce", "topic": topic, "acks": -1, "records": klib.kjs_records(recs)},
        {"op": "fetchTopicOffsets", "topic": topic},
    ])
    assert res[0]["created"] is True, "kafkajs createTopics returned %r" % res[0]
    md = res[1]["topics"]
    assert [t["name"] for t in md] == [topic], md
    assert sorted(p["partition"] for p in md[0]["partitions"]) == list(range(PARTITIONS)), md
    assert all(p["leader"] == 0 for p in md[0]["partitions"]), "leader must be node 0: %r" % md
    bad = [m for m in res[2]["metadata"] if m["errorCode"] != 0]
    assert not bad, "kafkajs produce errors: %r" % bad[:5]
    got = klib.ck_consume(broker.bootstrap, topic, n)
    per_p = klib.verify(got, recs, partitions=set(range(PARTITIONS)))
    assert len(per_p) == PARTITIONS, "records landed in partitions %s only" % sorted(per_p)
    # fetchTopicOffsets: high = low + count for each partition.
    offs = {int(o["partition"]): o for o in res[3]["offsets"]}
    assert sorted(offs) == list(range(PARTITIONS)), offs
    for p in range(PARTITIONS):
        count = len(per_p.get(p, []))
        o = offs[p]
        assert (int(o["low"]), int(o["high"]), int(o["offset"])) == (0, count, count), \
            "partition %d: fetchTopicOffsets %r, want low 0, high %d" % (p, o, count)
