"""HTTP and Kafka see the same log: confluent-kafka reads what HTTP wrote (CloudEvents Kafka binding,
binary mode) and HTTP reads what confluent-kafka wrote; partitionkey uses Kafka's murmur2 partitioner."""
import base64
import json
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from conftest import ce


def kafka_read(bootstrap, topic, partitions, expected, timeout=30):
    """Manual assign from offset 0; returns messages until `expected` came and every partition hit EOF."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "http-itest-reader",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "auto.offset.reset": "error", "socket.timeout.ms": 10000, "fetch.wait.max.ms": 200})
    got, errors = [], []
    eof = {p: False for p in partitions}
    try:
        c.assign([TopicPartition(topic, p, 0) for p in partitions])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                e = m.error()
                if e is not None:
                    if e.code() == KafkaError._PARTITION_EOF:
                        eof[m.partition()] = True
                    else:
                        errors.append(str(e))
                    continue
                eof[m.partition()] = False
                got.append(m)
            if errors or (len(got) >= expected and all(eof.values())):
                break
    finally:
        c.close()
    assert not errors, "consumer errors: %r" % errors[:5]
    assert len(got) == expected, "read %d records from %s, want %d" % (len(got), topic, expected)
    return got


def kafka_produce(bootstrap, topic, msgs, conf=None, timeout=30):
    """msgs: list of dicts for Producer.produce (value, key, headers, partition). Returns
    [(partition, offset)] in order."""
    c = {"bootstrap.servers": bootstrap, "linger.ms": 5, "message.timeout.ms": 20000,
         "socket.timeout.ms": 10000}
    c.update(conf or {})
    p = Producer(c)
    reports, errors = {}, []

    def cb(i):
        def done(err, msg):
            if err is not None:
                errors.append((i, str(err)))
            else:
                reports[i] = (msg.partition(), msg.offset())
        return done

    for i, m in enumerate(msgs):
        p.produce(topic, on_delivery=cb(i), **m)
        p.poll(0)
    left = p.flush(timeout)
    assert left == 0 and not errors, "unacked %d, errors %r" % (left, errors[:5])
    return [reports[i] for i in range(len(msgs))]


def test_kafka_reads_http_writes(server):
    topic, nparts = "x.http2kafka", 3
    server.create_topic(topic, nparts)
    rs = []
    # binary mode with a JSON body and a key
    r = server.post_binary(topic, {"specversion": "1.0", "id": "bin-1", "source": "/x", "type": "t.bin",
                                   "partitionkey": "alice", "subject": "sub"},
                           b'{"v":1}', ctype="application/json")
    assert r.status == 200, r
    rs.append(("bin-1", r.json()))
    # structured mode with string data, no key
    r = server.post_structured(topic, ce("st-1", source="/x", type_="t.st", datacontenttype="text/plain",
                                         data="hello kafka"))
    assert r.status == 200, r
    rs.append(("st-1", r.json()))
    # structured with binary data
    raw = bytes(range(256))
    r = server.post_structured(topic, ce("b64-1", source="/x", partitionkey="bob",
                                         data_base64=base64.b64encode(raw).decode()))
    assert r.status == 200, r
    rs.append(("b64-1", r.json()))

    msgs = kafka_read(server.bootstrap, topic, range(nparts), len(rs))
    by_id = {}
    for m in msgs:
        h = {k: v for k, v in (m.headers() or [])}
        assert "ce_id" in h, ("no ce_id header", m.headers())
        by_id[h["ce_id"].decode()] = (m, h)
    assert sorted(by_id) == sorted(i for i, _ in rs), sorted(by_id)
    for i, rcpt in rs:
        m, _ = by_id[i]
        assert (m.partition(), m.offset()) == (rcpt["partition"], rcpt["offset"]), (i, rcpt)

    m, h = by_id["bin-1"]
    assert m.key() == b"alice" and m.value() == b'{"v":1}', (m.key(), m.value())
    assert h["ce_specversion"] == b"1.0" and h["ce_source"] == b"/x" and h["ce_type"] == b"t.bin", h
    assert h["ce_subject"] == b"sub", h
    assert h["content-type"] == b"application/json", h
    m, h = by_id["st-1"]
    assert m.key() is None and m.value() == b"hello kafka", (m.key(), m.value())
    assert h["content-type"] == b"text/plain" and h["ce_type"] == b"t.st", h
    m, h = by_id["b64-1"]
    assert m.key() == b"bob" and m.value() == raw, (m.key(), m.value()[:16])
    for _, (m, h) in by_id.items():
        assert set(h) >= {"ce_id", "ce_source", "ce_type", "ce_specversion"}, h


def test_http_reads_kafka_writes(server):
    topic = "x.kafka2http"
    server.create_topic(topic, 1)
    msgs = [
        {"value": b"plain value", "key": b"k1", "partition": 0},
        {"value": b"\x00\xff\x10binary", "key": None, "partition": 0},
        # A CloudEvent produced per the Kafka binding (binary mode) by a Kafka client
        {"value": b'{"n":5}', "key": b"k3", "partition": 0,
         "headers": [("ce_specversion", b"1.0"), ("ce_id", b"kce-1"), ("ce_source", b"/kafka"),
                     ("ce_type", b"com.example.k"), ("content-type", b"application/json")]},
    ]
    before = int(time.time() * 1000)
    reports = kafka_produce(server.bootstrap, topic, msgs)
    assert reports == [(0, 0), (0, 1), (0, 2)], reports
    evs = server.read_all(topic, 0)
    assert len(evs) == 3, evs
    e0, e1, e2 = evs
    assert e0["type"] == "factlog.record" and e0["specversion"] == "1.0", e0
    assert e0["id"] == "%s-0-0" % topic and e0["source"] == "/factlog/topics/" + topic, e0
    assert e0["partitionkey"] == "k1" and e0["data"] == "plain value", e0
    assert e0["partition"] == 0 and e0["offset"] == 0, e0
    ts = time.mktime(time.strptime(e0["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(ts * 1000 - before) < 120000, (e0["time"], before)
    assert e1["type"] == "factlog.record" and e1["id"] == "%s-0-1" % topic, e1
    assert "partitionkey" not in e1, e1
    assert base64.b64decode(e1["data_base64"]) == b"\x00\xff\x10binary", e1
    assert e2["id"] == "kce-1" and e2["source"] == "/kafka" and e2["type"] == "com.example.k", e2
    assert e2["datacontenttype"] == "application/json" and e2["data"] == {"n": 5}, e2
    assert e2["partitionkey"] == "k3" and e2["offset"] == 2, e2


def test_partitionkey_same_partition_order_preserved(server):
    topic, nparts = "x.keys", 6
    server.create_topic(topic, nparts)
    keys = ["user-%d" % k for k in range(12)] + ["ü-ñíçødé", "a" * 200]
    seq = {k: 0 for k in keys}
    sent = []  # (key, seq, receipt)
    # Interleave keys over many requests (single structured, binary and batches).
    for rnd in range(4):
        batch = []
        for k in keys:
            ev = ce("%s#%d" % (k, seq[k]), source="/keys", partitionkey=k, data={"k": k, "seq": seq[k]})
            batch.append((k, seq[k], ev))
            seq[k] += 1
        if rnd == 0:
            for k, s, ev in batch:
                r = server.post_structured(topic, ev)
                assert r.status == 200, r
                sent.append((k, s, r.json()))
        elif rnd == 1:
            for k, s, ev in batch:
                attrs = {a: ev[a] for a in ("specversion", "id", "source", "type")}
                attrs["partitionkey"] = k
                if not k.isascii():
                    continue  # HTTP header values are latin-1 on the wire; keep binary mode ASCII
                r = server.post_binary(topic, attrs, json.dumps(ev["data"]).encode(), "application/json")
                assert r.status == 200, r
                sent.append((k, s, r.json()))
        else:
            r = server.post_batch(topic, [ev for _, _, ev in batch])
            assert r.status == 200, r
            sent.extend((k, s, rc) for (k, s, _), rc in zip(batch, r.json()))

    part_of = {}
    for k, s, rc in sent:
        assert part_of.setdefault(k, rc["partition"]) == rc["partition"], (k, part_of[k], rc)
    assert len(set(part_of.values())) > 1, "all keys landed in one partition: %r" % part_of

    # Kafka's own murmur2 partitioner (librdkafka murmur2_random = the Java client's) agrees.
    reports = kafka_produce(server.bootstrap, topic,
                            [{"key": k.encode(), "value": b"probe"} for k in keys],
                            conf={"partitioner": "murmur2_random"})
    for k, (p, _) in zip(keys, reports):
        assert p == part_of[k], "key %r: HTTP put it in partition %d, Kafka's murmur2 in %d" % (
            k, part_of[k], p)

    # Order per key is the order of posting.
    for p in range(nparts):
        seen = {}
        for e in server.read_all(topic, p):
            if e["type"] == "factlog.record":
                continue  # the Kafka probes
            k = e["partitionkey"]
            assert part_of[k] == p, e
            seen.setdefault(k, []).append(e["data"]["seq"])
        for k, seqs in seen.items():
            assert seqs == sorted(seqs), (k, seqs)
    for k in keys:
        want = sorted(s for kk, s, _ in sent if kk == k)
        got = [e["data"]["seq"] for e in server.read_all(topic, part_of[k])
               if e.get("partitionkey") == k and e["type"] != "factlog.record"]
        assert got == want, (k, got, want)


def test_empty_partitionkey(server):
    """An empty partitionkey is a key of zero bytes (not no key): Kafka's murmur2 places it, and it
    reads back as the empty string over both HTTP and Kafka."""
    topic, nparts = "x.emptykey", 6
    server.create_topic(topic, nparts)
    r = server.post_structured(topic, ce("ek-1", source="/keys", partitionkey="", data="v"))
    if r.status == 400:
        return  # refusing it is fine too
    assert r.status == 200, r
    rc = r.json()
    [(p, _)] = kafka_produce(server.bootstrap, topic, [{"key": b"", "value": b"probe"}],
                             conf={"partitioner": "murmur2_random"})
    assert p == rc["partition"], "HTTP put key '' in partition %d, Kafka's murmur2 in %d" % (
        rc["partition"], p)
    [m, _] = kafka_read(server.bootstrap, topic, [p], 2)
    assert m.key() == b"", m.key()
    e = server.read_all(topic, p)[0]
    assert e["id"] == "ek-1", e
    assert e.get("partitionkey") == "", "partitionkey '' read back as %r" % e.get("partitionkey")
