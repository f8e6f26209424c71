"""Client helpers shared by the Kafka integration tests: record generation, produce/consume with
confluent-kafka, kafka-python, kcat and kafkajs, and the checks run on what comes back.

Every loop here is bounded by a deadline; every subprocess runs with a timeout (subprocess.run kills
it by PID when the timeout expires).
"""
import base64
import json
import os
import subprocess
import tempfile
import time
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_MODULES = os.path.join(HERE, "node_modules")

# ---------------------------------------------------------------------------------------------------
# Records. Record i has key "key-NNNN" (i % nkeys) and a per-key sequence number seq = i // nkeys, so
# the records of one key were produced in seq order and must come back in that order.


class Rec:
    __slots__ = ("i", "key", "seq", "value", "headers", "ts")

    def __init__(self, i, key, seq, value, headers, ts):
        self.i, self.key, self.seq, self.value, self.headers, self.ts = i, key, seq, value, headers, ts


def now_ms():
    return int(time.time() * 1000)


def make_records(n, nkeys=1000, base_ts=None, headers=True, pad=40):
    """n keyed records. Values are text (kcat-safe: no tab, newline, comma or '=')."""
    if base_ts is None:
        base_ts = now_ms() - 3_600_000  # an hour ago: clearly a client timestamp, not the broker's
    out = []
    filler = "abcdefghijklmnopqrstuvwxyz0123456789" * 4
    for i in range(n):
        k = i % nkeys
        seq = i // nkeys
        key = b"key-%04d" % k
        value = ("%s|%d|%d|%s" % (key.decode(), seq, i, filler[: pad + (i % 17)])).encode()
        hdrs = None
        if headers:
            hdrs = [("idx", b"%d" % i), ("bin", bytes([0, 255, i % 256, 10])), ("empty", b"")]
        out.append(Rec(i, key, seq, value, hdrs, base_ts + i))
    return out


def index_of_value(value):
    """The record number encoded in a value made by make_records."""
    return int(value.split(b"|")[2])


class Got:
    """A consumed record, client-independent."""
    __slots__ = ("partition", "offset", "key", "value", "headers", "ts_type", "ts")

    def __init__(self, partition, offset, key, value, headers, ts_type, ts):
        self.partition, self.offset, self.key, self.value = partition, offset, key, value
        self.headers, self.ts_type, self.ts = headers, ts_type, ts

    def __repr__(self):
        return "Got(p=%s o=%s key=%r value=%r ts=%s/%s headers=%r)" % (
            self.partition, self.offset, self.key, self.value[:60] if self.value else self.value,
            self.ts_type, self.ts, self.headers)


def _fmt_problems(problems, total):
    shown = problems[:15]
    more = "" if len(problems) <= 15 else "\n  ... and %d more" % (len(problems) - 15)
    return "%d problem(s) in %d consumed records:\n  %s%s" % (
        len(problems), total, "\n  ".join(shown), more)


def check_dense_offsets(got, partitions=None, start=0):
    """Offsets of each partition are start, start+1, ... with no gap or repeat."""
    by_p = defaultdict(list)
    for g in got:
        by_p[g.partition].append(g.offset)
    problems = []
    for p, offs in sorted(by_p.items()):
        if partitions is not None and p not in partitions:
            problems.append("record from unexpected partition %s" % p)
        s = sorted(offs)
        want = list(range(start, start + len(s)))
        if s != want:
            dup = len(s) - len(set(s))
            problems.append("partition %d: offsets not dense from %d (n=%d, min=%s, max=%s, dups=%d)"
                            % (p, start, len(s), s[0], s[-1], dup))
    return problems


def verify(got, expected, *, check_headers=True, ts_exact=True, ts_window=None, partitions=None):
    """Checks that got (list of Got) is exactly expected (list of Rec): every key, value, header and
    timestamp; one partition per key; per-key order by offset; dense offsets per partition."""
    problems = []
    want = {r.i: r for r in expected}
    seen = {}
    for g in got:
        try:
            i = index_of_value(g.value)
        except Exception:
            problems.append("unparseable value %r at p%s/o%s" % (g.value, g.partition, g.offset))
            continue
        r = want.get(i)
        if r is None:
            problems.append("unexpected record %r" % g)
            continue
        if i in seen:
            problems.append("duplicate record %d at p%s/o%s (first at p%s/o%s)"
                            % (i, g.partition, g.offset, seen[i].partition, seen[i].offset))
            continue
        seen[i] = g
        if g.value != r.value:
            problems.append("record %d: value %r, want %r" % (i, g.value, r.value))
        if g.key != r.key:
            problems.append("record %d: key %r, want %r" % (i, g.key, r.key))
        if check_headers:
            wh = r.headers or []
            gh = g.headers or []
            if list(gh) != list(wh):
                problems.append("record %d: headers %r, want %r" % (i, gh, wh))
        if ts_exact:
            if g.ts != r.ts:
                problems.append("record %d: timestamp %s (type %s), want %s (CreateTime)"
                                % (i, g.ts, g.ts_type, r.ts))
        elif ts_window is not None:
            lo, hi = ts_window
            if not (lo <= g.ts <= hi):
                problems.append("record %d: timestamp %s (type %s) outside the produce window "
                                "[%d, %d]" % (i, g.ts, g.ts_type, lo, hi))
        if g.ts_type is not None and g.ts_type != 1:
            problems.append("record %d: timestamp type %s, want 1 (CreateTime)" % (i, g.ts_type))
    missing = [i for i in want if i not in seen]
    if missing:
        problems.append("%d of %d records missing, e.g. %s"
                        % (len(missing), len(want), sorted(missing)[:10]))
    # Same key -> same partition; within a partition a key's seq numbers rise 0, 1, 2, ... by offset.
    key_part = {}
    per_p = defaultdict(list)
    for g in seen.values():
        per_p[g.partition].append(g)
        if g.key in key_part and key_part[g.key] != g.partition:
            problems.append("key %r in partitions %s and %s" % (g.key, key_part[g.key], g.partition))
        key_part.setdefault(g.key, g.partition)
    for p, recs in per_p.items():
        recs.sort(key=lambda g: g.offset)
        next_seq = defaultdict(int)
        for g in recs:
            r = want[index_of_value(g.value)]
            if r.seq != next_seq[g.key]:
                problems.append("partition %d offset %d: key %r seq %d, want seq %d (order broken)"
                                % (p, g.offset, g.key, r.seq, next_seq[g.key]))
                next_seq[g.key] = r.seq + 1
                continue
            next_seq[g.key] += 1
    problems += check_dense_offsets(got, partitions)
    if problems:
        raise AssertionError(_fmt_problems(problems, len(got)))
    return per_p


# ---------------------------------------------------------------------------------------------------
# confluent-kafka (librdkafka 2.0.2)


def ck_admin(bootstrap):
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def ck_create_topic(bootstrap, topic, partitions, timeout=15):
    from confluent_kafka.admin import NewTopic
    a = ck_admin(bootstrap)
    fs = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                         operation_timeout=10, request_timeout=timeout)
    fs[topic].result(timeout=timeout)
    wait_partitions(bootstrap, topic, partitions)


def ck_partitions(bootstrap, topic, timeout=10):
    """Partition ids of topic from Metadata; None if the topic is not listed."""
    md = ck_admin(bootstrap).list_topics(timeout=timeout)
    t = md.topics.get(topic)
    if t is None:
        return None
    if t.error is not None:
        raise AssertionError("metadata for %s carries error %s" % (topic, t.error))
    return sorted(t.partitions)


def wait_partitions(bootstrap, topic, n, timeout=10):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = ck_partitions(bootstrap, topic)
        if last is not None and len(last) == n:
            return last
        time.sleep(0.2)
    raise AssertionError("topic %s: metadata shows partitions %r, want %d" % (topic, last, n))


def ck_produce(bootstrap, topic, records, conf=None, partition_of=None, timeout=90):
    """Produces records; returns (reports, errors): reports[i] = (partition, offset) per acked record."""
    from confluent_kafka import Producer
    c = {"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000,
         "queue.buffering.max.messages": 200000, "message.timeout.ms": 60000,
         "socket.timeout.ms": 10000}
    c.update(conf or {})
    p = Producer(c)
    reports = {}
    errors = []

    def cb(i):
        def done(err, msg):
            if err is not None:
                errors.append((i, str(err)))
            else:
                reports[i] = (msg.partition(), msg.offset())
        return done

    deadline = time.monotonic() + timeout
    for r in records:
        kw = {}
        if r.headers is not None:
            kw["headers"] = r.headers
        if r.ts is not None:
            kw["timestamp"] = r.ts
        if partition_of is not None:
            kw["partition"] = partition_of(r)
        while True:
            try:
                p.produce(topic, r.value, r.key, on_delivery=cb(r.i), **kw)
                break
            except BufferError:
                if time.monotonic() > deadline:
                    raise AssertionError("producer queue stayed full until the deadline; "
                                         "%d acked, errors %r" % (len(reports), errors[:5]))
                p.poll(0.05)
        p.poll(0)
    left = p.flush(max(1.0, deadline - time.monotonic()))
    if left:
        raise AssertionError("%d records still unacknowledged after %ds (acked %d, errors %r)"
                             % (left, timeout, len(reports), errors[:5]))
    return reports, errors


def ck_produce_ok(bootstrap, topic, records, conf=None, partition_of=None, timeout=90):
    reports, errors = ck_produce(bootstrap, topic, records, conf, partition_of, timeout)
    assert not errors, "delivery failed for %d records, e.g. %r" % (len(errors), errors[:5])
    assert len(reports) == len(records), "acked %d of %d" % (len(reports), len(records))
    return reports


def ck_consumer(bootstrap, extra=None):
    from confluent_kafka import Consumer
    c = {"bootstrap.servers": bootstrap, "group.id": "factlog-itest", "enable.auto.commit": False,
         "enable.partition.eof": True, "auto.offset.reset": "error", "socket.timeout.ms": 10000,
         "fetch.wait.max.ms": 200}
    c.update(extra or {})
    return Consumer(c)


def ck_consume(bootstrap, topic, expected, partitions=None, timeout=60, start=0):
    """Reads partitions of topic from offset start (manual assignment) until at least expected
    records came and every partition reported EOF, or timeout. Returns a list of Got."""
    from confluent_kafka import KafkaError, TopicPartition
    if partitions is None:
        partitions = ck_partitions(bootstrap, topic)
        assert partitions, "topic %s not in metadata" % topic
    c = ck_consumer(bootstrap)
    got = []
    errors = []
    eof = {p: False for p in partitions}
    try:
        c.assign([TopicPartition(topic, p, start) for p in partitions])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msgs = c.consume(num_messages=10000, timeout=0.5)
            for m in msgs:
                e = m.error()
                if e is not None:
                    if e.code() == KafkaError._PARTITION_EOF:
                        eof[m.partition()] = True
                    else:
                        errors.append(str(e))
                    continue
                eof[m.partition()] = False
                tst, ts = m.timestamp()
                got.append(Got(m.partition(), m.offset(), m.key(), m.value(),
                               m.headers(), tst, ts))
            if errors:
                break
            if len(got) >= expected and all(eof.values()):
                break
    finally:
        c.close()
    assert not errors, "consumer errors: %r" % errors[:5]
    return got


# ---------------------------------------------------------------------------------------------------
# kafka-python 2.0.2


def kp_producer(bootstrap, **kw):
    from kafka import KafkaProducer
    conf = dict(bootstrap_servers=bootstrap, linger_ms=10, batch_size=256 * 1024,
                request_timeout_ms=20000, max_block_ms=20000, retries=3)
    conf.update(kw)
    return KafkaProducer(**conf)


def kp_produce(bootstrap, topic, records, timeout=90, **kw):
    """Produces with kafka-python; returns {i: (partition, offset)} (offset -1 with acks=0)."""
    prod = kp_producer(bootstrap, **kw)
    futs = []
    try:
        for r in records:
            futs.append((r.i, prod.send(topic, key=r.key, value=r.value, headers=r.headers or [],
                                        timestamp_ms=r.ts)))
        prod.flush(timeout=timeout)
        out = {}
        errs = []
        for i, f in futs:
            try:
                md = f.get(timeout=5)
                out[i] = (md.partition, md.offset)
            except Exception as e:  # noqa: BLE001 - report every failure kind
                errs.append((i, repr(e)))
        assert not errs, "kafka-python: %d sends failed, e.g. %r" % (len(errs), errs[:5])
        return out
    finally:
        prod.close(timeout=10)


def kp_consume(bootstrap, topic, expected, timeout=60, **kw):
    from kafka import KafkaConsumer, TopicPartition
    conf = dict(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="none", fetch_max_wait_ms=200, request_timeout_ms=20000)
    conf.update(kw)
    c = KafkaConsumer(**conf)
    got = []
    try:
        deadline = time.monotonic() + timeout
        parts = None
        while time.monotonic() < deadline:
            parts = c.partitions_for_topic(topic)
            if parts:
                break
            time.sleep(0.2)
        assert parts, "kafka-python: no partitions for %s" % topic
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, 0)
        end = c.end_offsets(tps)
        while time.monotonic() < deadline:
            batch = c.poll(timeout_ms=500, max_records=10000)
            for tp, recs in batch.items():
                for m in recs:
                    got.append(Got(m.partition, m.offset, m.key, m.value, list(m.headers),
                                   m.timestamp_type + 1 if m.timestamp_type is not None else None,
                                   m.timestamp))
            if len(got) >= expected and all(c.position(tp) >= end[tp] for tp in tps):
                break
    finally:
        c.close()
    return got


# ---------------------------------------------------------------------------------------------------
# kcat


def run(argv, timeout, input_bytes=None, check=True):
    """Runs argv with a timeout (subprocess.run kills the child by PID on expiry)."""
    try:
        cp = subprocess.run(argv, input=input_bytes, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("%s timed out after %ss; stderr: %s"
                             % (" ".join(argv[:6]), timeout,
                                (e.stderr or b"")[-2000:].decode("utf-8", "replace")))
    if check and cp.returncode != 0:
        raise AssertionError("%s exited %d; stderr: %s" % (" ".join(argv), cp.returncode,
                                                           cp.stderr[-3000:].decode("utf-8",
                                                                                    "replace")))
    return cp


def kcat_produce(bootstrap, topic, records, headers=(), codec=None, timeout=90):
    """kcat -P with -K<TAB>; headers (list of (name, value) text) go on every record."""
    argv = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", "\t",
            "-X", "linger.ms=20", "-X", "batch.num.messages=10000",
            "-X", "message.timeout.ms=60000"]
    for k, v in headers:
        argv += ["-H", "%s=%s" % (k, v)]
    if codec:
        argv += ["-z", codec]
    data = b"".join(r.key + b"\t" + r.value + b"\n" for r in records)
    cp = run(argv, timeout, data)
    err = cp.stderr.decode("utf-8", "replace")
    assert "fail" not in err.lower() and "error" not in err.lower(), "kcat -P stderr: %s" % err
    return cp


def kcat_consume(bootstrap, topic, timeout=90):
    """kcat -C -e -J of every partition from the beginning (no group)."""
    cp = run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-J", "-q",
              "-X", "fetch.wait.max.ms=200"], timeout)
    got = []
    # -J copies raw bytes into its JSON strings: round-trip them through surrogateescape.
    for line in cp.stdout.decode("utf-8", "surrogateescape").split("\n"):
        if not line.strip():
            continue
        j = json.loads(line)
        h = j.get("headers")
        hdrs = None
        if h:
            hdrs = [(h[n], None if h[n + 1] is None else h[n + 1].encode("utf-8", "surrogateescape"))
                    for n in range(0, len(h), 2)]
        key = j.get("key")
        val = j.get("payload")
        enc = (lambda x: None if x is None else x.encode("utf-8", "surrogateescape"))
        tstype = {"create": 1, "logappend": 2}.get(j.get("tstype"), j.get("tstype"))
        got.append(Got(j["partition"], j["offset"], enc(key), enc(val), hdrs, tstype, j.get("ts")))
    return got


# ---------------------------------------------------------------------------------------------------
# kafkajs (node)


def _b64(b):
    return None if b is None else base64.b64encode(b).decode()


def kjs_records(records, with_ts=True, with_headers=True):
    out = []
    for r in records:
        d = {"k": _b64(r.key), "v": _b64(r.value)}
        if with_ts and r.ts is not None:
            d["ts"] = r.ts
        if with_headers and r.headers:
            d["h"] = [[n, _b64(v)] for n, v in r.headers]
        out.append(d)
    return out


def kjs(bootstrap, steps, timeout=120):
    """Runs kjs.js with the given steps; returns its results list. Raises on a step error."""
    assert os.path.isdir(os.path.join(NODE_MODULES, "kafkajs")), \
        "kafkajs is not installed: run `npm ci` in %s (run.sh does)" % HERE
    with tempfile.TemporaryDirectory(prefix="factlog-kjs-") as d:
        spec = os.path.join(d, "spec.json")
        res = os.path.join(d, "result.json")
        with open(spec, "w") as f:
            json.dump({"brokers": [bootstrap], "steps": steps}, f)
        env = dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1")
        try:
            cp = subprocess.run(["node", os.path.join(HERE, "kjs.js"), spec, res], cwd=HERE,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise AssertionError("kafkajs timed out after %ss; output: %s" % (
                timeout, ((e.stdout or b"") + (e.stderr or b""))[-3000:].decode("utf-8",
                                                                               "replace")))
        logs = (cp.stdout + cp.stderr)[-3000:].decode("utf-8", "replace")
        assert cp.returncode == 0 and os.path.exists(res), \
            "kafkajs exited %d: %s" % (cp.returncode, logs)
        with open(res) as f:
            out = json.load(f)
    if "error" in out:
        e = out["error"]
        raise AssertionError("kafkajs step %d (%s) failed: %s: %s\nlogs: %s" % (
            len(out["results"]), steps[len(out["results"])]["op"], e.get("name"),
            e.get("message"), logs))
    return out["results"]
