"""Batch mode: 1,000 events in one request -> 1,000 receipts, dense offsets per partition."""
from conftest import ce


def check_dense(receipts, topic, nparts, base=None):
    per_part = {}
    for rc in receipts:
        assert rc["topic"] == topic, rc
        assert 0 <= rc["partition"] < nparts, rc
        per_part.setdefault(rc["partition"], []).append(rc["offset"])
    for p, offs in per_part.items():
        start = (base or {}).get(p, 0)
        assert offs == list(range(start, start + len(offs))), (p, offs[:20])
    return per_part


def test_batch_1000_keyed(server):
    topic, nparts = "batch.keyed", 4
    server.create_topic(topic, nparts)
    events = [ce(i, source="/batch", partitionkey="key-%d" % (i % 37), data={"i": i}) for i in range(1000)]
    r = server.post_batch(topic, events)
    assert r.status == 200, r
    receipts = r.json()
    assert isinstance(receipts, list) and len(receipts) == 1000, r
    per_part = check_dense(receipts, topic, nparts)
    assert sum(len(v) for v in per_part.values()) == 1000
    assert server.hwms(topic) == {p: len(per_part.get(p, [])) for p in range(nparts)}
    # every receipt points at its event; order inside a partition is the batch order
    for p in range(nparts):
        evs = server.read_all(topic, p)
        want = [str(i) for i, rc in enumerate(receipts) if rc["partition"] == p]
        assert [e["id"] for e in evs] == want, p
        assert [e["offset"] for e in evs] == list(range(len(want)))
        assert all(e["data"] == {"i": int(e["id"])} for e in evs)


def test_batch_1000_round_robin(server):
    topic, nparts = "batch.rr", 4
    server.create_topic(topic, nparts)
    r = server.post_batch(topic, [ce(i, source="/rr") for i in range(1000)])
    assert r.status == 200, r
    receipts = r.json()
    assert len(receipts) == 1000
    per_part = check_dense(receipts, topic, nparts)
    counts = sorted(len(per_part.get(p, [])) for p in range(nparts))
    assert counts == [250, 250, 250, 250], counts
    # a second batch continues each partition's offsets densely
    base = server.hwms(topic)
    r = server.post_batch(topic, [ce(i, source="/rr2") for i in range(100)])
    assert r.status == 200, r
    check_dense(r.json(), topic, nparts, base)
    assert sum(server.hwms(topic).values()) == 1100


def test_read_paging(server):
    topic = "batch.page"
    server.create_topic(topic, 1)
    assert server.post_batch(topic, [ce(i) for i in range(25)]).status == 200
    r = server.read(topic, 0, 5, 10)
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("application/cloudevents-batch+json"), r.headers
    assert [e["offset"] for e in r.json()] == list(range(5, 15))
    assert r.headers["factlog-next-offset"] == "15"
    r = server.read(topic, 0, 25)
    assert r.status == 200 and r.json() == [], r  # at the high watermark: empty
    r = server.read(topic, 0, 26)
    assert r.status == 416, r
    body = r.json()
    assert body["error"] == "offset_out_of_range" and body["high_watermark"] == 25, body
    assert server.read(topic, 1, 0).status == 404
