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


# ---------------------------------------------------------------------------------------------------
# Consumer-group members, each its own process so that a test can SIGKILL one by PID. Every member
# writes its events as JSON lines, at once, to its own file (they survive a SIGKILL):
#   {"ev": "ready"}, {"ev": "assign", "parts": [...]}, {"ev": "revoke", "parts": [...]},
#   {"ev": "rec", "p": P, "o": O, "k": b64, "v": b64}, {"ev": "commit", "offsets": {P: next}},
#   {"ev": "commit_error" | "error", "err": text}, {"ev": "done", "reason": text}
# each with a wall-clock "t" in ms. kcat cannot do that itself: its records (-J -u) go to a file of
# their own, and a reader thread here turns its "% Group ... rebalanced" stderr lines into events.
#
# Options common to every client (spec keys): group, topic, session_ms, heartbeat_ms, commit
# ("none"; "each": commit what was read after every batch; "at": read exactly commit_at records,
# commit them synchronously, leave), expect + idle_s (leave once expect records came and then none
# for idle_s), duration_s (hard limit), and a start barrier (ready/go files) so members of one test
# join within the broker's 500 ms initial rebalance delay.

GROUP_CLIENTS = ("ck", "kp", "kjs", "kcat", "rdk")


def rdk_member_bin():
    """The C librdkafka member (tests/integration/kafka/rdk_member.c), built by meson."""
    path = os.environ.get("FACTLOG_RDK_MEMBER") or os.path.join(
        os.path.dirname(os.environ.get("FACTLOG_BIN", "build/factlog")), "tests", "rdk_member")
    assert os.access(path, os.X_OK), "the C group member %s is missing: build it (ninja -C build)" % path
    return path


def _b64d(s):
    return None if s is None else base64.b64decode(s)


def _member_stop_reason(spec, count, last_rec, deadline):
    if time.monotonic() > deadline:
        return "deadline"
    if spec.get("stop") and os.path.exists(spec["stop"]):
        return "stop"
    if spec.get("commit") == "at" and count >= spec["commit_at"]:
        return "commitAt"
    exp = spec.get("expect")
    if exp is not None and count >= exp and time.monotonic() - last_rec >= spec.get("idle_s", 1.0):
        return "expect"
    return None


def _member_barrier(spec, emit, deadline):
    emit(ev="ready")
    if spec.get("ready"):
        with open(spec["ready"], "w") as f:
            f.write("ready")
    if spec.get("go"):
        while not os.path.exists(spec["go"]):
            if time.monotonic() > deadline:
                raise RuntimeError("no go file before the deadline")
            time.sleep(0.005)


def _ck_member(spec, emit):
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
    deadline = time.monotonic() + spec.get("duration_s", 60)
    topic, commit = spec["topic"], spec.get("commit", "none")
    c = Consumer({"bootstrap.servers": spec["bootstrap"], "group.id": spec["group"],
                  "client.id": spec.get("client_id", "ck-member"), "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": spec["session_ms"],
                  "heartbeat.interval.ms": spec["heartbeat_ms"], "fetch.wait.max.ms": 100,
                  "socket.timeout.ms": 10000, "max.poll.interval.ms": 60000})
    _member_barrier(spec, emit, deadline)

    def on_assign(_c, parts):
        emit(ev="assign", parts=sorted(tp.partition for tp in parts if tp.topic == topic))

    def on_revoke(_c, parts):
        emit(ev="revoke", parts=sorted(tp.partition for tp in parts if tp.topic == topic))

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    count, last_rec, nxt = 0, time.monotonic(), {}
    while True:
        reason = _member_stop_reason(spec, count, last_rec, deadline)
        if reason:
            break
        n = 0
        for m in c.consume(num_messages=500, timeout=0.1):
            e = m.error()
            if e is not None:
                if e.code() != KafkaError._PARTITION_EOF:
                    emit(ev="error", err=str(e))
                continue
            if commit == "at" and count >= spec["commit_at"]:
                continue  # past the known point: not processed, not committed
            count += 1
            n += 1
            nxt[m.partition()] = m.offset() + 1
            emit(ev="rec", p=m.partition(), o=m.offset(), k=_b64(m.key()), v=_b64(m.value()))
        if n:
            last_rec = time.monotonic()
            if commit == "each":
                try:
                    c.commit(asynchronous=False)
                except KafkaException as e:
                    emit(ev="commit_error", err=str(e))
    if commit == "at":
        offs = [TopicPartition(topic, p, o) for p, o in sorted(nxt.items())]
        if offs:
            res = c.commit(offsets=offs, asynchronous=False)
            bad = [(tp.partition, str(tp.error)) for tp in res if tp.error is not None]
            if bad:
                raise RuntimeError("commit failed: %r" % bad)
        emit(ev="commit", offsets={str(p): o for p, o in nxt.items()})
    c.close()
    emit(ev="done", reason=reason)


def _kp_member(spec, emit):
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
    from kafka.consumer.subscription_state import ConsumerRebalanceListener
    deadline = time.monotonic() + spec.get("duration_s", 60)
    topic, commit = spec["topic"], spec.get("commit", "none")
    c = KafkaConsumer(bootstrap_servers=spec["bootstrap"], group_id=spec["group"],
                      client_id=spec.get("client_id", "kp-member"), enable_auto_commit=False,
                      auto_offset_reset="earliest", session_timeout_ms=spec["session_ms"],
                      heartbeat_interval_ms=spec["heartbeat_ms"], fetch_max_wait_ms=100,
                      max_poll_interval_ms=60000)

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit(ev="revoke", parts=sorted(tp.partition for tp in revoked if tp.topic == topic))

        def on_partitions_assigned(self, assigned):
            emit(ev="assign", parts=sorted(tp.partition for tp in assigned if tp.topic == topic))

    _member_barrier(spec, emit, deadline)
    c.subscribe([topic], listener=Listener())
    count, last_rec, nxt = 0, time.monotonic(), {}
    while True:
        reason = _member_stop_reason(spec, count, last_rec, deadline)
        if reason:
            break
        n = 0
        batch = c.poll(timeout_ms=100, max_records=500)
        for _tp, recs in sorted(batch.items()):
            for m in recs:
                if commit == "at" and count >= spec["commit_at"]:
                    continue
                count += 1
                n += 1
                nxt[m.partition] = m.offset + 1
                emit(ev="rec", p=m.partition, o=m.offset, k=_b64(m.key), v=_b64(m.value))
        if n:
            last_rec = time.monotonic()
            if commit == "each":
                try:
                    c.commit()
                except Exception as e:  # noqa: BLE001 - CommitFailedError during a rebalance
                    emit(ev="commit_error", err=repr(e))
    if commit == "at":
        if nxt:
            c.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in nxt.items()})
        emit(ev="commit", offsets={str(p): o for p, o in nxt.items()})
    c.close(autocommit=False)
    emit(ev="done", reason=reason)


def group_member_main(spec_path):
    """Entry point of a Python member process (client "ck" or "kp")."""
    with open(spec_path) as f:
        spec = json.load(f)
    fd = os.open(spec["out"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def emit(**ev):
        ev["t"] = now_ms()
        os.write(fd, (json.dumps(ev) + "\n").encode())

    try:
        {"ck": _ck_member, "kp": _kp_member}[spec["client"]](spec, emit)
    except BaseException as e:
        emit(ev="error", err=repr(e))
        raise
    finally:
        os.close(fd)


def _kcat_stderr_reader(stream, out_path, log_path):
    import re
    pat = re.compile(r"rebalanced \(memberid ([^)]*)\): (assigned|revoked): (.*)")
    with open(out_path, "a") as out, open(log_path, "a") as log:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace")
            log.write(line)
            log.flush()
            m = pat.search(line)
            if m:
                parts = sorted(int(x) for x in re.findall(r"\[(\d+)\]", m.group(3)))
                ev = {"ev": "assign" if m.group(2) == "assigned" else "revoke", "parts": parts,
                      "member": m.group(1), "t": now_ms()}
                out.write(json.dumps(ev) + "\n")
                out.flush()
    stream.close()


class GroupMember:
    """One member process. events() reads what it reported so far (also after it died)."""

    def __init__(self, name, client, spec, workdir):
        self.name, self.client, self.spec = name, client, dict(spec)
        self.out = os.path.join(workdir, name + ".events")
        self.log = os.path.join(workdir, name + ".log")
        self.kcat_out = os.path.join(workdir, name + ".kcat.json")
        self.result_path = os.path.join(workdir, name + ".result.json")
        self.spec.update(out=self.out, stop=os.path.join(workdir, name + ".stop"), client=client)
        self.proc = None
        self.thread = None
        open(self.out, "a").close()

    # --- process control -------------------------------------------------------------------------
    def start(self):
        s = self.spec
        env = dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1", PYTHONDONTWRITEBYTECODE="1")
        if self.client in ("ck", "kp"):
            path = os.path.join(os.path.dirname(self.out), self.name + ".spec.json")
            with open(path, "w") as f:
                json.dump(s, f)
            argv = ["/usr/bin/python3", "-c",
                    "import sys; sys.path.insert(0, %r); import klib; klib.group_member_main(%r)"
                    % (HERE, path)]
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=log, env=env, cwd=HERE)
        elif self.client == "rdk":
            path = os.path.join(os.path.dirname(self.out), self.name + ".spec.json")
            with open(path, "w") as f:
                json.dump(s, f)
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen([rdk_member_bin(), path], stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=log, env=env)
        elif self.client == "kjs":
            assert os.path.isdir(os.path.join(NODE_MODULES, "kafkajs")), \
                "kafkajs is not installed: run `npm ci` in %s (run.sh does)" % HERE
            step = {"op": "groupConsume", "groupId": s["group"], "topic": s["topic"],
                    "outFile": self.out, "durationMs": int(s.get("duration_s", 60) * 1000),
                    "sessionTimeout": s["session_ms"], "heartbeatInterval": s["heartbeat_ms"],
                    "rebalanceTimeout": 30000, "stopFile": s["stop"],
                    "commit": s.get("commit", "none")}
            for k_py, k_js in (("ready", "readyFile"), ("go", "goFile"), ("commit_at", "commitAt"),
                               ("expect", "expect")):
                if s.get(k_py) is not None:
                    step[k_js] = s[k_py]
            step["idleMs"] = int(s.get("idle_s", 1.0) * 1000)
            path = os.path.join(os.path.dirname(self.out), self.name + ".spec.json")
            with open(path, "w") as f:
                json.dump({"brokers": [s["bootstrap"]], "steps": [step]}, f)
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(["node", os.path.join(HERE, "kjs.js"), path,
                                              self.result_path], stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=log, env=env, cwd=HERE)
        elif self.client == "kcat":
            import threading
            argv = ["kcat", "-b", s["bootstrap"], "-J", "-u",
                    "-X", "auto.offset.reset=earliest",
                    "-X", "session.timeout.ms=%d" % s["session_ms"],
                    "-X", "heartbeat.interval.ms=%d" % s["heartbeat_ms"],
                    "-X", "fetch.wait.max.ms=100", "-X", "client.id=%s" % self.name]
            commit = s.get("commit", "none")
            if commit == "none":
                argv += ["-X", "enable.auto.commit=false"]
            elif commit == "each":
                argv += ["-X", "enable.auto.commit=true", "-X", "auto.commit.interval.ms=200"]
            elif commit == "at":
                # kcat stores the offset of each record it prints; it stops after -c records and
                # commits the stored offsets synchronously when it closes the consumer.
                argv += ["-X", "enable.auto.commit=true", "-c", str(s["commit_at"])]
            if s.get("exit_at_end"):
                argv += ["-e"]
            argv += ["-G", s["group"], s["topic"]]
            with open(self.kcat_out, "ab") as out:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=subprocess.PIPE, env=env)
            self.thread = threading.Thread(target=_kcat_stderr_reader,
                                           args=(self.proc.stderr, self.out, self.log), daemon=True)
            self.thread.start()
        else:
            raise AssertionError("unknown group client %r" % self.client)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        """SIGKILL by PID, and wait for it."""
        import signal
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        if self.thread is not None:
            self.thread.join(timeout=5)

    def request_stop(self):
        import signal
        if not self.alive():
            return
        if self.client == "kcat":
            os.kill(self.proc.pid, signal.SIGTERM)
        else:
            open(self.spec["stop"], "w").close()

    def wait(self, timeout, what="exit"):
        """Waits for the process to exit; on timeout kills it (by PID) and raises."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError("%s (%s, pid %d) did not %s within %ss\n%s"
                                 % (self.name, self.client, self.proc.pid, what, timeout,
                                    self.log_tail()))
        if self.thread is not None:
            self.thread.join(timeout=5)
        return rc

    def stop(self, timeout=30):
        self.request_stop()
        rc = self.wait(timeout, "leave the group and exit")
        self.assert_clean_exit(rc)
        return rc

    def assert_clean_exit(self, rc=None):
        rc = self.proc.returncode if rc is None else rc
        errs = self.errors()
        assert rc == 0 and not errs, "%s (%s) exited %s with errors %r\n%s" % (
            self.name, self.client, rc, errs[:5], self.log_tail())

    def log_tail(self, n=3000):
        try:
            with open(self.log, "rb") as f:
                data = f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            data = ""
        return "----- %s log -----\n%s" % (self.name, data)

    # --- what it reported -----------------------------------------------------------------------
    def events(self):
        out = []
        with open(self.out, "rb") as f:
            for line in f.read().split(b"\n"):
                if line.strip():
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass  # a torn last line of a killed process
        if self.client == "kjs" and os.path.exists(self.result_path):
            with open(self.result_path) as f:
                res = json.load(f)
            if "error" in res:
                out.append({"ev": "error", "err": "%s: %s" % (res["error"].get("name"),
                                                              res["error"].get("message"))})
        return out

    def records(self):
        """What it consumed, as Got (key, value, partition, offset), in the order it got them."""
        if self.client != "kcat":
            return [Got(e["p"], e["o"], _b64d(e["k"]), _b64d(e["v"]), None, None, None)
                    for e in self.events() if e["ev"] == "rec"]
        got = []
        enc = (lambda x: None if x is None else x.encode("utf-8", "surrogateescape"))
        with open(self.kcat_out, "rb") as f:
            for line in f.read().decode("utf-8", "surrogateescape").split("\n"):
                if not line.strip():
                    continue
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                got.append(Got(j["partition"], j["offset"], enc(j.get("key")),
                               enc(j.get("payload")), None, None, None))
        return got

    def count(self):
        if self.client != "kcat":
            return sum(1 for e in self.events() if e["ev"] == "rec")
        with open(self.kcat_out, "rb") as f:
            return f.read().count(b"\n")

    def assignments(self):
        """[(t_ms, parts)] of every assignment it reported."""
        return [(e["t"], e["parts"]) for e in self.events() if e["ev"] == "assign"]

    def current(self):
        """Its partitions now: the last assignment, or [] after a revoke."""
        cur = []
        for e in self.events():
            if e["ev"] == "assign":
                cur = e["parts"]
            elif e["ev"] == "revoke":
                cur = []
        return cur

    def errors(self):
        return [e for e in self.events() if e["ev"] == "error"]


class GroupMembers(list):
    """Members of one test; leaving the with-block kills (by PID) any still running."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for m in self:
            if m.alive():
                m.kill9()


def start_members(members, timeout=40):
    """Starts members together: each connects, reports ready, and waits for a shared go file, so
    that they all send JoinGroup at once (kcat has no barrier: it is just started)."""
    workdir = os.path.dirname(members[0].out)
    go = os.path.join(workdir, "go-%d" % id(members))
    for m in members:
        if m.client != "kcat":
            m.spec["ready"] = m.out + ".ready"
            m.spec["go"] = go
    for m in members:
        if m.client != "kcat":
            m.start()
    deadline = time.monotonic() + timeout
    for m in members:
        if m.client == "kcat":
            continue
        while not os.path.exists(m.spec["ready"]):
            if not m.alive():
                raise AssertionError("%s exited (%s) before it was ready\n%s"
                                     % (m.name, m.proc.returncode, m.log_tail()))
            if time.monotonic() > deadline:
                raise AssertionError("%s not ready within %ss\n%s" % (m.name, timeout,
                                                                      m.log_tail()))
            time.sleep(0.02)
    open(go, "w").close()
    for m in members:
        if m.client == "kcat":
            m.start()
    return members


def wait_until(cond, timeout, what, interval=0.1):
    """Polls cond() until it returns something true; raises AssertionError(what()) on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (
                timeout, what() if callable(what) else what))
        time.sleep(interval)


def check_records_at_least_once(got, expected):
    """Every consumed record is one of expected with the right key and value, each key stays in one
    partition, and every expected record was consumed at least once. Returns the duplicate count."""
    want = {r.i: r for r in expected}
    problems = []
    seen = {}
    dups = 0
    key_part = {}
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
        if g.value != r.value or g.key != r.key:
            problems.append("record %d: key %r value %r, want %r %r" % (i, g.key, g.value, r.key,
                                                                      r.value))
        if i in seen:
            dups += 1
            if seen[i] != (g.partition, g.offset):
                problems.append("record %d read at p%s/o%s and at p%s/o%s" % (
                    i, g.partition, g.offset, seen[i][0], seen[i][1]))
        seen[i] = (g.partition, g.offset)
        if key_part.setdefault(g.key, g.partition) != g.partition:
            problems.append("key %r in partitions %s and %s" % (g.key, key_part[g.key],
                                                                g.partition))
    missing = sorted(i for i in want if i not in seen)
    if missing:
        problems.append("%d of %d records never consumed (lost), e.g. %s" % (
            len(missing), len(want), missing[:10]))
    if problems:
        raise AssertionError(_fmt_problems(problems, len(got)))
    return dups


def committed_offsets(port, group, topic, partitions, version=1):
    """{partition: (offset, metadata)} committed for group, by a raw OffsetFetch."""
    import kwire
    with kwire.GroupConn(port) as c:
        r = c.call("fetch", group, {topic: list(partitions)}, version=version)
    assert r["error"] == 0, "OffsetFetch v%d of %s: error %d" % (version, group, r["error"])
    out = {}
    for (t, p), (off, md, err) in r["offsets"].items():
        assert err == 0, "OffsetFetch v%d %s %s[%d]: error %d" % (version, group, t, p, err)
        out[p] = (off, md)
    return out
