"""acks=0 and acks=1 still deliver every record (read back whole)."""
import pytest

import klib

N = 5000


@pytest.mark.parametrize("acks", [0, 1])
def test_confluent_kafka_acks(broker, acks):
    t = "acks-ck-%d" % acks
    klib.ck_create_topic(broker.bootstrap, t, 4)
    recs = klib.make_records(N, nkeys=100)
    klib.ck_produce_ok(broker.bootstrap, t, recs, conf={"acks": acks})
    got = klib.ck_consume(broker.bootstrap, t, N)
    klib.verify(got, recs, partitions=set(range(4)))


@pytest.mark.parametrize("acks", [0, 1])
def test_kafka_python_acks(broker, acks):
    t = "acks-kp-%d" % acks
    klib.ck_create_topic(broker.bootstrap, t, 4)
    recs = klib.make_records(N, nkeys=100)
    acked = klib.kp_produce(broker.bootstrap, t, recs, acks=acks)
    assert len(acked) == N
    got = klib.kp_consume(broker.bootstrap, t, N)
    klib.verify(got, recs, partitions=set(range(4)))
    if acks == 1:
        where = {klib.index_of_value(g.value): (g.partition, g.offset) for g in got}
        wrong = [(i, acked[i], where[i]) for i in acked if acked[i] != where[i]]
        assert not wrong, "acked offsets differ from read offsets: %r" % wrong[:5]


def test_kafkajs_acks1(broker):
    t = "acks-kjs-1"
    recs = klib.make_records(2000, nkeys=100)
    res = klib.kjs(broker.bootstrap, [
        {"op": "createTopics", "topics": [{"topic": t, "partitions": 4}]},
        {"op": "produce", "topic": t, "acks": 1, "records": klib.kjs_records(recs)},
    ])
    bad = [m for m in res[1]["metadata"] if m["errorCode"] != 0]
    assert not bad, bad[:5]
    got = klib.ck_consume(broker.bootstrap, t, len(recs))
    klib.verify(got, recs, partitions=set(range(4)))
