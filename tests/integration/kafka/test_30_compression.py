"""Compressed batches: each codec each client supports, 1,000 records, read back byte-identical."""
import random

import pytest

import klib

N = 1000


def binary_records(n, seed):
    """Keyed records whose values are compressible text followed by arbitrary bytes."""
    rnd = random.Random(seed)
    base = klib.now_ms() - 60_000
    out = []
    for i in range(n):
        key = b"key-%02d" % (i % 40)
        seq = i // 40
        tail = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 64)))
        value = b"%s|%d|%d|" % (key, seq, i) + b"compressible " * (i % 9) + tail
        out.append(klib.Rec(i, key, seq, value, [("n", b"%d" % i)], base + i))
    return out


def _kafka_python_codecs():
    from kafka import codec
    out = ["gzip"]  # built in (zlib)
    if codec.has_snappy():
        out.append("snappy")
    if codec.has_lz4():
        out.append("lz4")
    if codec.has_zstd():
        out.append("zstd")
    return out


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_confluent_kafka_compression(broker, codec):
    t = "z-ck-" + codec
    klib.ck_create_topic(broker.bootstrap, t, 2)
    recs = binary_records(N, seed=sum(map(ord, codec)))
    klib.ck_produce_ok(broker.bootstrap, t, recs, conf={"compression.type": codec,
                                                        "linger.ms": 50})
    got = klib.ck_consume(broker.bootstrap, t, N)
    klib.verify(got, recs, partitions={0, 1})
    if codec in _kafka_python_codecs():  # another client decodes the same batches
        got = klib.kp_consume(broker.bootstrap, t, N)
        klib.verify(got, recs, partitions={0, 1})


@pytest.mark.parametrize("codec", _kafka_python_codecs())
def test_kafka_python_compression(broker, codec):
    t = "z-kp-" + codec
    klib.ck_create_topic(broker.bootstrap, t, 2)
    recs = binary_records(N, seed=7)
    klib.kp_produce(broker.bootstrap, t, recs, acks="all", compression_type=codec)
    got = klib.kp_consume(broker.bootstrap, t, N)
    klib.verify(got, recs, partitions={0, 1})
    got = klib.ck_consume(broker.bootstrap, t, N)  # librdkafka decodes kafka-python's framing
    klib.verify(got, recs, partitions={0, 1})


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_kcat_compression(broker, codec):
    t = "z-kcat-" + codec
    klib.ck_create_topic(broker.bootstrap, t, 2)
    recs = klib.make_records(N, nkeys=40, headers=False)
    t0 = klib.now_ms()
    klib.kcat_produce(broker.bootstrap, t, recs, codec=codec)
    t1 = klib.now_ms()
    got = klib.kcat_consume(broker.bootstrap, t)
    klib.verify(got, recs, ts_exact=False, ts_window=(t0 - 1000, t1 + 1000), partitions={0, 1})


def test_kafkajs_gzip(broker):
    t = "z-kjs-gzip"
    recs = binary_records(N, seed=11)
    res = klib.kjs(broker.bootstrap, [
        {"op": "createTopics", "topics": [{"topic": t, "partitions": 2}]},
        {"op": "produce", "topic": t, "acks": -1, "compression": "gzip", "chunk": 250,
         "records": klib.kjs_records(recs)},
    ])
    assert res[0]["created"] is True
    bad = [m for m in res[1]["metadata"] if m["errorCode"] != 0]
    assert not bad, bad[:5]
    got = klib.ck_consume(broker.bootstrap, t, N)
    klib.verify(got, recs, partitions={0, 1})
