"""Tiered storage: sealed segments of a topic with remote.storage.enable=true go to the archive (a
directory, or s3rver); local retention then drops them; a Kafka consumer seeking to offset 0, a lookup by
timestamp, and the HTTP read API still get every record, also after a restart (and, for S3, with the
download cache gone)."""
import json
import os
import shutil
import threading
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


def archive_keys(srv, prefix):
    """The archive's object keys under PREFIX/ (PREFIX: TOPIC-CREATEDMS)."""
    if srv.kind == "s3":
        return [k for k in srv.s3.objects() if k.startswith("factlog/%s/" % prefix)]
    base = os.path.join(srv.archive_dir, prefix)
    return sorted(os.path.relpath(os.path.join(d, f), srv.archive_dir) for d, _, fs in os.walk(base) for f in fs)


def topic_prefixes(srv, topic):
    """The TOPIC-CREATEDMS prefixes present in the archive."""
    if srv.kind == "s3":
        names = {k.split("/")[1] for k in srv.s3.objects()}
    else:
        names = set(os.listdir(srv.archive_dir)) if os.path.isdir(srv.archive_dir) else set()
    return sorted(n for n in names if n.rsplit("-", 1)[0] == topic)


def produce_n(srv, topic, n, tag):
    p = Producer({"bootstrap.servers": srv.bootstrap, "acks": "all", "linger.ms": 1, "batch.num.messages": 20})
    for i in range(n):
        p.produce(topic, key=b"%s-%05d" % (tag, i), value=b"x" * 200)
        if i % 500 == 0:
            p.poll(0)
    assert p.flush(60) == 0


def wait_archived(srv, topic, segments=2):
    def done():
        ps = partitions(srv, topic)
        return all(p.get("archive", {}).get("segments", 0) >= segments and p["local_log_start"] > 0 for p in ps) and ps
    return wait_until(done, 30, "segments of %s archived and dropped locally" % topic, interval=0.2)


def read_keys(srv, topic, count):
    c = Consumer({"bootstrap.servers": srv.bootstrap, "group.id": "reader-%d" % time.monotonic_ns(),
                  "enable.auto.commit": False, "auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = []
        deadline = time.monotonic() + 60
        while len(got) < count and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            assert m.error() is None, m.error()
            got.append((m.offset(), m.key()))
        time.sleep(0.3)
        m = c.poll(0.2)
        assert m is None or m.error() is not None, "more records than produced: %r" % (m.key(),)
        return got
    finally:
        c.close()


ARCHIVED = {"segment.bytes": "16384", "remote.storage.enable": "true", "local.retention.bytes": "1",
            "retention.ms": "-1"}


def test_deleting_a_topic_deletes_its_archive(archived_server):
    srv = archived_server
    srv.create_topic("gone", 1, ARCHIVED)
    produce_n(srv, "gone", 1500, b"old")
    wait_archived(srv, "gone")
    (old,) = topic_prefixes(srv, "gone")
    keys = archive_keys(srv, old)
    assert any(k.endswith("/0/manifest") for k in keys) and len(keys) >= 7, keys
    r = srv.request("DELETE", "/v1/topics/gone")
    assert r.status in (200, 204), r
    wait_until(lambda: archive_keys(srv, old) == [], 30, "the deleted topic's archive deleted", interval=0.2)
    assert topic_prefixes(srv, "gone") == []
    if srv.kind == "dir":
        assert not os.path.exists(os.path.join(srv.archive_dir, old))

    # the same name again: a new archive, and none of the old records
    srv.create_topic("gone", 1, ARCHIVED)
    produce_n(srv, "gone", 800, b"new")
    wait_archived(srv, "gone")
    (new,) = topic_prefixes(srv, "gone")
    assert new != old
    got = read_keys(srv, "gone", 800)
    assert got == [(i, b"new-%05d" % i) for i in range(800)], got[:3]
    srv.stop()
    srv.start()
    assert read_keys(srv, "gone", 800) == got, "the same after a restart"


def test_archive_deletion_waits_for_an_unreachable_archive_and_survives_a_restart(request, monkeypatch):
    from conftest import _server
    gen = _server(request, monkeypatch, "s3")
    srv = next(gen)
    passed = False
    try:
        srv.create_topic("later", 1, ARCHIVED)
        produce_n(srv, "later", 1500, b"old")
        wait_archived(srv, "later")
        (old,) = topic_prefixes(srv, "later")
        srv.s3.stop()
        r = srv.request("DELETE", "/v1/topics/later")
        assert r.status in (200, 204), r
        time.sleep(1.0)  # five archiver passes fail against the stopped archive
        srv.stop()
        srv.s3.start()
        n = len(archive_keys(srv, old))  # the archiver may have added segments before s3rver stopped
        assert n >= 7, "nothing could be deleted while the archive was down"
        srv.start()
        wait_until(lambda: archive_keys(srv, old) == [], 30, "the deletion finished after the restart",
                   interval=0.2)
        with open(srv.log_path, "rb") as f:
            log = f.read().decode(errors="replace")
        assert "cannot delete the objects of the deleted topic %s" % old in log
        assert "deleted %d object(s) of the deleted topic %s" % (n, old) in log
        passed = True
    finally:
        gen.close()  # the fixture keeps its directory unless the test's report says passed: not known yet
        if passed:
            shutil.rmtree(srv.root, ignore_errors=True)


def cache_bytes(srv):
    """Bytes of the finished files in the S3 download cache (downloads in progress are *.tmp)."""
    total = 0
    for d, _, fs in os.walk(os.path.join(srv.data_dir, "archive-cache")):
        for f in fs:
            if not f.endswith(".tmp"):
                try:
                    total += os.path.getsize(os.path.join(d, f))
                except FileNotFoundError:
                    pass  # evicted while we looked
    return total


def test_s3_download_cache_stays_under_its_limit(s3_small_cache_server):
    import threading
    from conftest import CACHE_BYTES
    srv = s3_small_cache_server
    srv.create_topic("big", 1, ARCHIVED)
    n = 4000
    produce_n(srv, "big", n, b"k")
    (p,) = wait_archived(srv, "big", segments=30)
    assert p["local_log_start"] > 1000, p  # 30 segments of 16 KiB: about 70 records each
    assert cache_bytes(srv) == 0, "nothing read yet"
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(cache_bytes(srv))
            time.sleep(0.005)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        want = [(i, b"k-%05d" % i) for i in range(n)]
        assert read_keys(srv, "big", n) == want, "every record, through a cache smaller than the archive"
        assert read_keys(srv, "big", n) == want, "again: evicted segments are downloaded again"
    finally:
        stop.set()
        t.join(10)
    assert len(samples) > 20 and max(samples) > CACHE_BYTES // 2, (len(samples), max(samples or [0]))
    assert max(samples) <= CACHE_BYTES, "the cache grew to %d bytes (limit %d)" % (max(samples), CACHE_BYTES)
    archived = sum(int(k.split("/")[-1].endswith(".log")) for k in srv.s3.objects())
    assert archived >= 30
    # a restart with a smaller limit trims what the last run left
    srv.stop()
    i = srv.extra_args.index("--archive-cache-bytes")
    srv.extra_args[i + 1] = "100000"
    srv.start()
    assert cache_bytes(srv) <= 100000
    r = srv.get("/v1/topics/big/partitions/0/events?from=0&limit=3")
    assert r.status == 200 and [e["offset"] for e in r.json()] == [0, 1, 2], r
    assert cache_bytes(srv) <= 100000
    # a limit below what is being read at once (a partition keeps 4 archived segments open): files in use
    # are never evicted, so reads still work, and the cache says it is over its limit
    srv.stop()
    srv.extra_args[i + 1] = "65536"
    srv.start()
    assert read_keys(srv, "big", n) == want
    with open(srv.log_path, "rb") as f:
        assert b"exceed the limit of 65536 bytes" in f.read()


def in_background(fn):
    """Runs fn on a thread: (the thread, a dict that gets "got": its result or "error": its exception)."""
    result = {}

    def run():
        try:
            result["got"] = fn()
        except Exception as e:  # reported by the test's thread
            result["error"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, result


def archive_reader(srv):
    """A consumer that polls fast and never resets its position (reads below local retention)."""
    return Consumer({"bootstrap.servers": srv.bootstrap, "group.id": "reader-%d" % time.monotonic_ns(),
                     "enable.auto.commit": False, "auto.offset.reset": "error", "fetch.wait.max.ms": 50})


def slowest_live_produce(p):
    """20 acks=all produces to "hot", one at a time, 0.1 s apart: the slowest one's seconds."""
    slowest = 0.0
    for i in range(20):
        s = time.monotonic()
        p.produce("hot", key=b"live-%02d" % i, value=b"y")
        assert p.flush(30) == 0
        slowest = max(slowest, time.monotonic() - s)
        time.sleep(0.1)
    return slowest


def test_a_slow_archive_download_does_not_stall_other_clients(slow_s3_server):
    """A consumer reading below local retention makes the broker download segments. With one event loop
    and every download held 3 s, acks=all produces on another connection still answer quickly: the loop
    never waits for the archive (the download runs on its own thread and wakes the parked fetch)."""
    srv = slow_s3_server
    srv.create_topic("cold", 1, ARCHIVED)
    srv.create_topic("hot", 1, {})
    produce_n(srv, "cold", 1500, b"old")
    wait_archived(srv, "cold")
    srv.proxy.delay = 3.0
    t0 = time.monotonic()
    t, result = in_background(lambda: read_keys(srv, "cold", 1500))
    wait_until(lambda: srv.proxy.delayed > 0, 30, "the reader's download to start", interval=0.05)
    slowest = slowest_live_produce(Producer({"bootstrap.servers": srv.bootstrap, "acks": "all", "linger.ms": 0}))
    during = srv.proxy.delayed
    srv.proxy.delay = 0  # the rest of the segments (3 objects each, 21 segments) download at full speed
    t.join(120)
    assert not t.is_alive(), "the reader did not finish"
    assert "error" not in result, result.get("error")
    got = result["got"]
    keys = [k for _, k in got]
    want = [b"old-%05d" % i for i in range(1500)]
    bad = next((i for i in range(min(len(keys), len(want))) if keys[i] != want[i]), None)
    assert keys == want, (len(keys), bad, got[bad - 2:bad + 3] if bad is not None else got[-3:])
    assert during > 0 and time.monotonic() - t0 >= 3.0, "the downloads were held"
    assert slowest < 1.5, "a produce waited %.2f s behind an archive download" % slowest


def test_a_lookup_by_time_in_the_archive_does_not_stall_other_clients(slow_s3_server):
    """ListOffsets by timestamp below local retention (offsets_for_times; what `factlog replay --from TIME`
    asks) needs an archived segment's time index. With every download held 3 s and one event loop, the
    lookup waits for its download parked, not on the loop: acks=all produces on another topic still answer
    quickly, and the lookup then answers the right offset."""
    srv = slow_s3_server
    srv.create_topic("cold", 1, ARCHIVED)
    srv.create_topic("hot", 1, {})
    p = Producer({"bootstrap.servers": srv.bootstrap, "acks": "all", "linger.ms": 1, "batch.num.messages": 20})
    for i in range(1500):
        p.produce("cold", key=b"old-%05d" % i, value=b"x" * 200, timestamp=T0 + i)
    assert p.flush(60) == 0
    wait_archived(srv, "cold")
    srv.proxy.delay = 3.0

    def lookup():
        c = Consumer({"bootstrap.servers": srv.bootstrap, "group.id": "lookup-%d" % time.monotonic_ns()})
        try:
            return c.offsets_for_times([TopicPartition("cold", 0, T0 + 100)], timeout=60)
        finally:
            c.close()
    t0 = time.monotonic()
    t, result = in_background(lookup)
    wait_until(lambda: srv.proxy.delayed > 0, 30, "the lookup's download to start", interval=0.05)
    slowest = slowest_live_produce(p)
    t.join(90)
    assert not t.is_alive(), "the lookup did not finish"
    assert "error" not in result, result.get("error")
    (tp,) = result["got"]
    assert tp.error is None, tp.error
    assert tp.offset == 100, "the first record at or after T0+100 is offset 100, got %d" % tp.offset
    assert time.monotonic() - t0 >= 3.0, "the download was held"
    assert slowest < 1.5, "a produce waited %.2f s behind an archive download" % slowest


def test_a_stop_does_not_wait_for_a_hung_archive_download(slow_s3_server):
    """The store accepts downloads and then sends nothing (the proxy holds them 10 minutes): one for an
    HTTP read (on the HTTP server's thread), one for a Kafka fetch (on the download thread). SIGTERM must
    not wait for them: the transfers are cancelled and the server exits cleanly within seconds (before,
    the stop waited for the HTTP thread and joined the download thread, each stuck in curl)."""
    srv = slow_s3_server
    srv.create_topic("stuck", 1, ARCHIVED)
    produce_n(srv, "stuck", 600, b"old")
    wait_archived(srv, "stuck")
    srv.proxy.delay = 600.0
    # its answer or error does not matter (the connection closes as the server stops), only that it ends
    h, _ = in_background(lambda: srv.get("/v1/topics/stuck/partitions/0/events?from=0&limit=3", timeout=60))
    wait_until(lambda: srv.proxy.delayed > 0, 30, "the HTTP read's download to start", interval=0.05)
    c = archive_reader(srv)
    try:
        c.assign([TopicPartition("stuck", 0, OFFSET_BEGINNING)])
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:  # its fetch asks the download thread, which waits too
            m = c.poll(0.1)
            assert m is None or m.error() is not None, "a record read while its download is held"
        time.sleep(0.5)
        s = time.monotonic()
        srv.stop()  # raises unless the exit is clean (status 0 after SIGTERM, within the stop timeout)
        took = time.monotonic() - s
    finally:
        c.close()
    h.join(30)
    assert not h.is_alive(), "the HTTP read did not end with the server"
    assert took < 5.0, "the stop waited %.1f s for a hung download" % took


def test_archive_downloads_of_different_partitions_run_at_once(slow_s3_server):
    """A consumer (or a replay) reading two partitions below local retention needs a segment of each: the
    two downloads run at the same time, so a slow object of one partition does not hold the other's."""
    srv = slow_s3_server
    srv.create_topic("wide", 2, ARCHIVED)
    produce_n(srv, "wide", 3000, b"old")
    wait_archived(srv, "wide")
    srv.proxy.delay = 2.0
    c = archive_reader(srv)
    try:
        c.assign([TopicPartition("wide", 0, OFFSET_BEGINNING), TopicPartition("wide", 1, OFFSET_BEGINNING)])
        t0 = time.monotonic()
        while srv.proxy.max_held < 2 and time.monotonic() - t0 < 15:
            c.poll(0.1)
    finally:
        srv.proxy.delay = 0
        c.close()
    assert srv.proxy.delayed >= 2, "downloads of both partitions were asked for"
    assert srv.proxy.max_held >= 2, "the store never saw two downloads at once (one download at a time)"


def test_a_failing_archive_download_is_retried_seconds_apart(slow_s3_server):
    """Every download fails (the store answers 500): a consumer polling below local retention must not
    turn into back-to-back requests to the store; the failure is kept for each reader for a few seconds
    before one tries again. When the store works again, everything is read."""
    srv = slow_s3_server
    srv.create_topic("bad", 1, ARCHIVED)
    produce_n(srv, "bad", 600, b"old")
    wait_archived(srv, "bad")
    srv.proxy.fail = True
    c = archive_reader(srv)
    try:
        c.assign([TopicPartition("bad", 0, OFFSET_BEGINNING)])
        t0 = time.monotonic()
        while time.monotonic() - t0 < 8:
            m = c.poll(0.2)
            assert m is None or m.error() is not None, "a record read while the store fails"
    finally:
        c.close()
    tries = srv.proxy.failed
    # a try per 5 s at most, each stopping at its first failed GET: 2 or 3 in 8 s (with no spacing, each
    # parked fetch's wake-up tried again at once: far more than 12)
    assert 1 <= tries <= 12, "%d requests to a failing store in 8 s" % tries
    srv.proxy.fail = False
    time.sleep(5.5)  # the kept failure expires
    got = read_keys(srv, "bad", 600)
    assert [k for _, k in got] == [b"old-%05d" % i for i in range(600)], got[:3]
