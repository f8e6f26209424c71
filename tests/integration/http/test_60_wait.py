"""GET /v1/groups/{g}/wait: read-your-writes on a consumer group's committed offset (confluent-kafka)."""
import threading
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

from conftest import ce


def wait_path(group, topic, partition, offset, timeout_ms):
    return "/v1/groups/%s/wait?topic=%s&partition=%d&offset=%d&timeout_ms=%d" % (
        group, topic, partition, offset, timeout_ms)


def timed_get(server, path, timeout=30):
    t0 = time.monotonic()
    r = server.get(path, timeout=timeout)
    return r, time.monotonic() - t0


def group_consume(bootstrap, group, topic, n, timeout=30):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "socket.timeout.ms": 10000,
                  "session.timeout.ms": 10000, "fetch.wait.max.ms": 100})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error() is not None:
            assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
            continue
        got.append(m)
    if len(got) < n:
        c.close()
        raise AssertionError("group %s consumed %d of %d records in %d s" % (group, len(got), n, timeout))
    return c, got


def test_wait_before_and_after_commit(make_server):
    server = make_server("--group-initial-delay-ms", "0")
    topic, group = "wait.t", "wait-group"
    server.create_topic(topic, 1)
    r = server.post_batch(topic, [ce(i, source="/wait") for i in range(5)])
    assert r.status == 200, r
    assert [x["offset"] for x in r.json()] == [0, 1, 2, 3, 4]

    # Before any commit: 408 once the timeout ran out (and not much later).
    r, dt = timed_get(server, wait_path(group, topic, 0, 4, 500))
    assert r.status == 408, r
    body = r.json()
    assert body["error"] == "timeout" and "message" in body, body
    assert 0.4 <= dt < 3.0, "408 came after %.2f s for timeout_ms=500" % dt

    # A wait that is pending while the group consumes and commits.
    pending = {}

    def waiter():
        pending["resp"], pending["dt"] = timed_get(server, wait_path(group, topic, 0, 4, 20000))
        pending["done_at"] = time.monotonic()

    th = threading.Thread(target=waiter, daemon=True)
    th.start()
    c, got = group_consume(server.bootstrap, group, topic, 5)
    try:
        assert [m.offset() for m in got] == [0, 1, 2, 3, 4]
        # committing up to 3 (records 0..2) does not satisfy offset 4
        c.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
        time.sleep(0.7)
        assert th.is_alive(), "wait for offset 4 returned after a commit of 3: %r" % pending.get("resp")
        r, _ = timed_get(server, wait_path(group, topic, 0, 2, 1000))
        assert r.status == 200 and r.json() == {"caught_up": True, "committed": 3}, r
        r, _ = timed_get(server, wait_path(group, topic, 0, 3, 300))
        assert r.status == 408 and r.json().get("committed") == 3, r
        # now everything read is committed: the pending wait answers promptly
        c.commit(asynchronous=False)
        committed_at = time.monotonic()
    finally:
        c.close()
    th.join(25)
    assert not th.is_alive(), "pending wait did not return"
    resp = pending["resp"]
    assert resp.status == 200, resp
    assert resp.json() == {"caught_up": True, "committed": 5}, resp
    lag = pending["done_at"] - committed_at
    assert lag < 1.5, "pending wait answered %.2f s after the commit" % lag

    # After: immediate 200 for offsets below the commit, 408 at or above it.
    r, dt = timed_get(server, wait_path(group, topic, 0, 4, 5000))
    assert r.status == 200 and r.json() == {"caught_up": True, "committed": 5}, r
    assert dt < 1.0, "a satisfied wait took %.2f s" % dt
    r, dt = timed_get(server, wait_path(group, topic, 0, 5, 300))
    assert r.status == 408, r
    # another group has committed nothing
    r, _ = timed_get(server, wait_path("other-group", topic, 0, 0, 200))
    assert r.status == 408, r


def test_wait_bad_parameters(server):
    server.create_topic("wait.bad", 1)
    for q in ("", "?topic=wait.bad", "?topic=wait.bad&partition=0", "?topic=wait.bad&partition=x&offset=0",
              "?topic=wait.bad&partition=0&offset=-1", "?topic=wait.bad&partition=0&offset=0&timeout_ms=999999999"):
        r = server.get("/v1/groups/g/wait" + q)
        assert r.status == 400, (q, r)
        assert r.json()["error"] == "bad_request", (q, r)
    r = server.request("POST", "/v1/groups/g/wait?topic=wait.bad&partition=0&offset=0")
    assert r.status == 405, r


def test_pending_waits_answer_503_on_shutdown(make_server):
    """Requests suspended in the server (waits) when it stops: each answers 503 shutting_down at once, and
    the server exits cleanly (status 0)."""
    server = make_server()
    server.create_topic("wait.stop", 1)
    r = server.post_batch("wait.stop", [ce(i, source="/wait-stop") for i in range(3)])
    assert r.status == 200, r
    results = []
    lock = threading.Lock()

    def waiter(i):
        try:
            resp, dt = timed_get(server, wait_path("stop-group-%d" % i, "wait.stop", 0, 2, 60000), timeout=30)
            out = (resp.status, resp.json().get("error"), dt)
        except Exception as e:  # a reset connection is a failure too: the answer must be a 503
            out = ("exception", repr(e), None)
        with lock:
            results.append(out)

    threads = [threading.Thread(target=waiter, args=(i,), daemon=True) for i in range(8)]
    for th in threads:
        th.start()
    time.sleep(1.0)  # all suspended by now
    assert results == [], results
    t0 = time.monotonic()
    server.stop()  # raises unless the exit status is 0
    stopped_in = time.monotonic() - t0
    for th in threads:
        th.join(20)
    assert len(results) == 8, results
    assert all(s == 503 and e == "shutting_down" for s, e, _ in results), results
    assert stopped_in < 10, "stopping took %.1f s with 8 waits pending" % stopped_in
