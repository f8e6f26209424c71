"""(source, id) deduplication: a repeat within the window gets the original receipt, appends nothing."""
import time

from conftest import ce


def total(server, topic):
    return sum(server.hwms(topic).values())


def test_duplicate_posts_same_receipt(server):
    topic = "dd.single"
    server.create_topic(topic, 3)
    ev = ce("order-1", source="/dedup", data={"v": 1})
    r1 = server.post_structured(topic, ev)
    assert r1.status == 200, r1
    first = r1.json()
    # the same (source, id) again: structured with different data, then binary, then inside a batch
    r2 = server.post_structured(topic, dict(ev, data={"v": 2}))
    assert r2.status == 200 and r2.json() == first, (first, r2)
    r3 = server.post_binary(topic, {"specversion": "1.0", "id": "order-1", "source": "/dedup",
                                    "type": "other"}, b"x", "text/plain")
    assert r3.status == 200 and r3.json() == first, (first, r3)
    r4 = server.post_batch(topic, [ev, ce("order-2", source="/dedup")])
    assert r4.status == 200, r4
    assert r4.json()[0] == first, (first, r4.json())
    assert total(server, topic) == 2, server.hwms(topic)
    evs = [e for p in range(3) for e in server.read_all(topic, p)]
    assert sorted(e["id"] for e in evs) == ["order-1", "order-2"], evs
    stored = [e for e in evs if e["id"] == "order-1"][0]
    assert stored["data"] == {"v": 1} and stored["type"] == "com.example.test", stored
    # the same id from another source is another event
    r5 = server.post_structured(topic, ce("order-1", source="/dedup/other"))
    assert r5.status == 200 and r5.json() != first, r5
    assert total(server, topic) == 3


def test_duplicates_inside_one_batch(server):
    topic = "dd.batch"
    server.create_topic(topic, 2)
    events = [ce(i % 10, source="/dedup/batch", data={"n": i}) for i in range(30)]  # ids 0..9, three times
    r = server.post_batch(topic, events)
    assert r.status == 200, r
    receipts = r.json()
    assert len(receipts) == 30, receipts
    for i in range(10, 30):
        assert receipts[i] == receipts[i % 10], (i, receipts[i], receipts[i % 10])
    assert len({(x["partition"], x["offset"]) for x in receipts}) == 10, receipts
    assert total(server, topic) == 10, server.hwms(topic)
    evs = [e for p in range(2) for e in server.read_all(topic, p)]
    assert sorted(int(e["id"]) for e in evs) == list(range(10)), evs
    assert all(e["data"] == {"n": int(e["id"])} for e in evs), evs  # the first occurrence is kept
    # and the whole batch again: all duplicates, nothing appended
    r = server.post_batch(topic, events)
    assert r.status == 200 and r.json() == receipts, r
    assert total(server, topic) == 10


def test_dedup_window_expires(make_server):
    server = make_server("--dedup-window-ms", "300")
    topic = "dd.window"
    server.create_topic(topic, 1)
    ev = ce("w-1", source="/dedup/window")
    r1 = server.post_structured(topic, ev)
    assert r1.status == 200 and r1.json()["offset"] == 0, r1
    r2 = server.post_structured(topic, ev)
    assert r2.status == 200 and r2.json()["offset"] == 0, r2
    time.sleep(0.8)
    r3 = server.post_structured(topic, ev)
    assert r3.status == 200 and r3.json()["offset"] == 1, r3
    assert total(server, topic) == 2
