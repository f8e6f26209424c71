"""Tiered storage: sealed segments of a topic with remote.storage.enable=true go to the archive (a
directory, or s3rver); local retention then drops them; a Kafka consumer seeking to offset 0, a lookup by
timestamp, and the HTTP read API still get every record, also after a restart (and, for S3, with the
download cache gone)."""
import json
import os
import shutil
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from conftest import wait_until

N = 3000
PARTS = 2
T0 = 1767225600000  # 2026-01-01T00:00:00Z: record i has timestamp T0 + i


def produce(srv, topic):
    p = Producer({"bootstrap.servers": srv.bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 1, "batch.num.messages": 20, "partitioner": "murmur2_random"})
    receipts = {}

    def cb(err, msg):
        assert err is None, err
        receipts[msg.key().decode()] = (msg.partition(), msg.offset())
    for i in range(N):
        p.produce(topic, key=b"k%05d" % i, value=(b"v%05d-" % i) + b"x" * 200, timestamp=T0 + i,
                  headers=[("h", b"%d" % i)], on_delivery=cb)
        if i % 500 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    assert len(receipts) == N
    want = {q: [] for q in range(PARTS)}
    for key, (part, off) in receipts.items():
        want[part].append((off, key))
    for q in want:
        want[q].sort()
        assert [o for o, _ in want[q]] == list(range(len(want[q]))), "offsets are dense from 0"
    return want


def read_all(srv, topic, want):
    c = Consumer({"bootstrap.servers": srv.bootstrap, "group.id": "reader-%d" % time.monotonic_ns(),
                  "enable.auto.commit": False, "auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, q, OFFSET_BEGINNING) for q in range(PARTS)])
        got = {q: [] for q in range(PARTS)}
        deadline = time.monotonic() + 60
        while sum(len(v) for v in got.values()) < N and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            assert m.error() is None, m.error()
            i = int(m.key()[1:])
            assert m.value() == (b"v%05d-" % i) + b"x" * 200
            assert m.timestamp()[1] == T0 + i
            assert m.headers() == [("h", b"%d" % i)]
            got[m.partition()].append((m.offset(), m.key().decode()))
        assert got == want, "read back %d of %d records" % (sum(len(v) for v in got.values()), N)
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert lo == 0 and hi == len(want[0]), (lo, hi)
        # by timestamp: the earliest records are only in the archive
        off, key = want[0][3]
        ts = T0 + int(key[1:])
        r = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
        assert r[0].offset == off, (r[0].offset, off)
    finally:
        c.close()


def partitions(srv, topic):
    r = srv.get("/v1/topics/%s" % topic)
    assert r.status == 200, r
    return r.json()["partitions"]


def test_archive_serves_reads_below_local_retention(archived_server):
    srv = archived_server
    srv.create_topic("hist", PARTS, {"segment.bytes": "16384", "remote.storage.enable": "true",
                                     "local.retention.bytes": "1", "retention.ms": "-1"})
    want = produce(srv, "hist")

    # the archiver copies the sealed segments, then local retention drops them
    def archived():
        ps = partitions(srv, "hist")
        return all(p["local_log_start"] > 0 and p["log_start"] == 0 and p.get("archive", {}).get("start") == 0
                   for p in ps) and ps
    ps = wait_until(archived, 30, "segments archived and dropped locally", interval=0.2)
    for p in ps:
        assert p["archive"]["end"] >= p["local_log_start"], p
        assert p["archive"]["segments"] >= 2, p
    local = os.listdir(os.path.join(srv.data_dir, "topics", "hist", "0"))
    assert "%020d.log" % 0 not in local, "segment 0 is still on the local disk: %s" % sorted(local)
    if srv.kind == "dir":
        prefixes = os.listdir(srv.archive_dir)
        assert len(prefixes) == 1 and prefixes[0].startswith("hist-"), prefixes
        adir = os.path.join(srv.archive_dir, prefixes[0], "0")
        assert {"manifest", "%020d.log" % 0, "%020d.index" % 0, "%020d.timeindex" % 0} <= set(os.listdir(adir))
        with open(os.path.join(adir, "manifest")) as f:
            lines = f.read().splitlines()
        assert lines[0] == "factlog-archive-manifest 1" and lines[1].split()[0] == "0", lines[:3]
    else:
        keys = srv.s3.objects()
        assert any(k.endswith("/0/manifest") for k in keys) and any(k.endswith("/0/%020d.log" % 0) for k in keys), keys

    read_all(srv, "hist", want)
    # the HTTP read API, from offset 0
    r = srv.get("/v1/topics/hist/partitions/0/events?from=0&limit=5")
    assert r.status == 200, r
    evs = r.json()
    assert [e["offset"] for e in evs] == [0, 1, 2, 3, 4], evs
    assert evs[0]["partitionkey"] == want[0][0][1]

    # after a restart (and, for S3, without the download cache), the same
    srv.stop()
    shutil.rmtree(os.path.join(srv.data_dir, "archive-cache"), ignore_errors=True)
    srv.start()
    read_all(srv, "hist", want)
    r = srv.get("/v1/topics/hist/partitions/1/events?from=0&limit=3")
    assert r.status == 200 and [e["offset"] for e in r.json()] == [0, 1, 2], r


def test_topics_without_remote_storage_are_not_archived(archived_server):
    srv = archived_server
    srv.create_topic("plain", 1, {"segment.bytes": "16384"})
    p = Producer({"bootstrap.servers": srv.bootstrap, "linger.ms": 1, "batch.num.messages": 20})
    for i in range(500):
        p.produce("plain", value=b"x" * 200)
    assert p.flush(30) == 0
    time.sleep(1.0)  # five archiver passes
    (part,) = partitions(srv, "plain")
    assert "archive" not in part and part["local_log_start"] == 0 and part["segments"] > 1, part
    if srv.kind == "dir":
        assert not os.path.exists(srv.archive_dir) or os.listdir(srv.archive_dir) == []
    else:
        assert srv.s3.objects() == []


def test_bad_archive_configs_are_refused(archived_server):
    srv = archived_server
    for key, value in (("remote.storage.enable", "yes"), ("local.retention.ms", "-3"),
                       ("local.retention.bytes", "x")):
        r = srv.request("POST", "/v1/topics", {"name": "bad", "partitions": 1, "configs": {key: value}})
        assert r.status == 400 and key in json.dumps(r.json()), r
