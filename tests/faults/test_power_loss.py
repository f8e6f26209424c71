"""Power loss below the page cache: the broker runs under tests/faults/powerloss.c, an LD_PRELOAD shim that
keeps a copy of the data directory holding only what was fsynced (file data on fsync/fdatasync, names on an
fsync of their directory). Each round, while an idempotent acks=all producer writes, a consumer group commits
its offsets, and topics are created and deleted, the broker is killed with SIGKILL and the data directory is
replaced by the shim's copy: the disk as it is after the power comes back. Then, after the restart:
  - every acknowledged record is present at its offset and byte-identical, offsets are dense, no duplicates;
  - every acknowledged topic creation is there with its acknowledged records, every acknowledged deletion
    stays deleted;
  - every acknowledged offset commit is there (the committed offset is at least the acknowledged one);
and across the rounds the cut must have thrown away unsynced bytes that the page cache held, or the test
proves nothing. Odd rounds use the shim's strict mode (a name is durable only once its own directory is
fsynced); even rounds a journal that commits names in order. POWERCUTS rounds: 4 here, 60 in `make faults`."""
import os
import random
import shutil
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from broker import Broker, free_port

CUTS = int(os.environ.get("POWERCUTS", "4"))
SHIM = os.environ["FACTLOG_POWERLOSS_SHIM"]
PARTS = 3


def materialize(shadow, dst):
    """Builds the durable tree the shim recorded (shadow/names, shadow/blobs/ID) at dst."""
    os.makedirs(dst)
    entries = [line.rstrip("\n").split(" ", 2) for line in open(os.path.join(shadow, "names"))]
    # A name whose directory's own entry never became durable is lost with it (strict mode makes those).
    for e in sorted((e for e in entries if e[0] == "d"), key=lambda e: e[1].count("/")):
        if os.path.isdir(os.path.dirname(os.path.join(dst, e[1]))):
            os.mkdir(os.path.join(dst, e[1]))
    for kind, ident, path in (e for e in entries if e[0] == "f"):
        if not os.path.isdir(os.path.dirname(os.path.join(dst, path))):
            continue
        blob = os.path.join(shadow, "blobs", ident)
        out = os.path.join(dst, path)
        if os.path.exists(blob):
            shutil.copyfile(blob, out)
        else:
            open(out, "wb").close()  # named durably, never synced: empty


def unsynced_bytes(real, durable):
    """How much of the real tree's segment data the durable tree lacks (4 KiB blocks that differ, plus
    nonzero bytes past the durable end)."""
    lost = 0
    for d, _, files in os.walk(real):
        for f in files:
            if not f.endswith(".log"):
                continue
            r = open(os.path.join(d, f), "rb").read()
            p = os.path.join(durable, os.path.relpath(os.path.join(d, f), real))
            m = open(p, "rb").read() if os.path.exists(p) else b""
            n = min(len(r), len(m))
            lost += sum(4096 for i in range(0, n, 4096) if r[i:i + 4096] != m[i:i + 4096])
            lost += len(r[n:].strip(b"\0"))
    return lost


class Round:
    """The load of one round: its own producer (so no retry crosses the cut) and its own group."""

    def __init__(self, bootstrap, n, acked, lock):
        self.bootstrap, self.n, self.acked, self.lock = bootstrap, n, acked, lock
        self.stop = threading.Event()
        self.commits = {}  # partition -> highest acknowledged commit of group g-n
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                  "linger.ms": 1, "message.timeout.ms": 60000, "reconnect.backoff.ms": 20,
                                  "reconnect.backoff.max.ms": 200})
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "g-%d" % n,
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                  "session.timeout.ms": 6000, "on_commit": self.committed})
        self.threads = [threading.Thread(target=self.produce, daemon=True),
                        threading.Thread(target=self.commit, daemon=True)]
        for t in self.threads:
            t.start()

    def produce(self):
        def done(err, msg):
            if err is None:
                with self.lock:
                    self.acked[msg.value()] = (msg.partition(), msg.offset())

        i = 0
        while not self.stop.is_set():
            try:
                self.producer.produce("power", key=b"k%d" % (i % 40), value=b"r%d-%07d-" % (self.n, i) + b"p" * 200,
                                      on_delivery=done)
                i += 1
            except BufferError:
                self.producer.poll(0.02)
            if i % 50 == 0:
                self.producer.poll(0)
                time.sleep(0.002)

    def committed(self, err, tps):
        """A commit the broker acknowledged (asynchronous commits, so the cut never blocks this thread)."""
        if err is not None or self.stop.is_set():
            return
        for tp in tps:
            if tp.error is None:
                self.commits[tp.partition] = max(self.commits.get(tp.partition, 0), tp.offset)

    def commit(self):
        self.consumer.assign([TopicPartition("power", p, 0) for p in range(PARTS)])
        while not self.stop.is_set():
            try:
                last = {}
                for m in self.consumer.consume(500, 0.1):
                    if not m.error():
                        last[m.partition()] = m.offset() + 1
                if last:
                    self.consumer.commit(offsets=[TopicPartition("power", p, o) for p, o in last.items()],
                                         asynchronous=True)
            except KafkaException:
                time.sleep(0.05)

    def halt(self):
        """After the cut: nothing of this round's producer may be retried into the next broker."""
        self.stop.set()
        for t in self.threads:
            t.join(30)
        self.producer.purge()
        self.producer.flush(5)


def read_all(bootstrap, topic, parts):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "check-%s-%f" % (topic, time.time()),
                  "enable.auto.commit": False})
    ends = {p: 0 for p in range(parts)}
    if topic not in c.list_topics(timeout=10).topics:
        c.close()
        return {p: {} for p in range(parts)}, ends  # the checks below say what that loses
    for p in range(parts):
        ends[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
    c.assign([TopicPartition(topic, p, 0) for p in range(parts)])
    got = {p: {} for p in range(parts)}
    deadline = time.time() + 60
    while time.time() < deadline and any(len(got[p]) < ends[p] for p in range(parts)):
        for m in c.consume(5000, 0.5):
            if not m.error():
                got[m.partition()][m.offset()] = m.value()
    c.close()
    return got, ends


def test_power_loss_keeps_everything_acknowledged():
    rnd = random.Random(int(os.environ.get("POWER_SEED", "11")))
    root = os.path.realpath(__import__("tempfile").mkdtemp(prefix="factlog-power-"))
    data = os.path.join(root, "data")
    os.makedirs(data)
    port = free_port()

    def env(n):
        shadow = os.path.join(root, "shadow-%d" % n)
        os.makedirs(shadow)
        # Odd rounds: names durable only through an fsync of their own directory (POSIX's letter).
        return dict(os.environ, LD_PRELOAD=SHIM, FACTLOG_POWERLOSS_ROOT=data, FACTLOG_POWERLOSS_SHADOW=shadow,
                    FACTLOG_POWERLOSS_STRICT=str(n % 2))

    b = Broker("--default-partitions", str(PARTS), root=root, port=port, env=env(0))
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    acked, lock = {}, threading.Lock()
    topics = {}   # topic -> list of acknowledged values (offsets 0..n-1) while it should exist
    deleted = set()
    lost_total = 0
    problems = []
    try:
        for n in range(CUTS):
            load = Round(b.bootstrap, n, acked, lock)
            # An acknowledged creation with acknowledged records, and an acknowledged deletion of an older one.
            name = "t-%d" % n
            admin.create_topics([NewTopic(name, 1)])[name].result(10)
            p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
            vals = [b"%s-%d" % (name.encode(), i) for i in range(10)]
            for v in vals:
                p.produce(name, v)
            assert p.flush(10) == 0
            topics[name] = vals
            if n >= 2:
                old = "t-%d" % (n - 2)
                admin.delete_topics([old])[old].result(10)
                del topics[old]
                deleted.add(old)
            time.sleep(rnd.uniform(0.3, 1.2))
            b.kill9()
            load.halt()
            # The power comes back: only what was synced is on the disk.
            shadow = os.path.join(root, "shadow-%d" % n)
            durable = os.path.join(root, "durable-%d" % n)
            materialize(shadow, durable)
            lost_total += unsynced_bytes(data, durable)
            log = b.log_tail(1 << 20)
            if "powerloss shim:" in log:
                problems.append("round %d: the shim saw files it could not follow:\n%s" % (n, log[-2000:]))
            shutil.rmtree(data)
            os.rename(durable, data)
            shutil.rmtree(shadow)
            b.start(env(n + 1))
            # Offset commits the broker acknowledged before the cut.
            c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "g-%d" % n})
            for tp in c.committed([TopicPartition("power", q) for q in range(PARTS)], timeout=10):
                want = load.commits.get(tp.partition, 0)
                if max(tp.offset, 0) < want:  # nothing committed reads back as a negative offset
                    problems.append("round %d: group g-%d committed %d on partition %d, reads back %d"
                                    % (n, n, want, tp.partition, tp.offset))
            c.close()
            load.consumer.close()
            # Topics.
            md = admin.list_topics(timeout=10).topics
            for t, vals in topics.items():
                if t not in md:
                    problems.append("round %d: acknowledged topic %s is gone" % (n, t))
                    continue
                got, _ = read_all(b.bootstrap, t, 1)
                if [got[0].get(i) for i in range(len(vals))] != vals:
                    problems.append("round %d: topic %s lost acknowledged records" % (n, t))
            for t in deleted:
                if t in md:
                    problems.append("round %d: deleted topic %s came back" % (n, t))
            # Records.
            got, ends = read_all(b.bootstrap, "power", PARTS)
            for value, (q, off) in acked.items():
                if got[q].get(off) != value:
                    problems.append("round %d: acknowledged %r at %d/%d reads back as %r"
                                    % (n, value[:14], q, off, got[q].get(off, b"")[:14]))
            for q in range(PARTS):
                if sorted(got[q]) != list(range(ends[q])):
                    problems.append("round %d: partition %d offsets are not dense" % (n, q))
            values = [v for q in range(PARTS) for v in got[q].values()]
            if len(values) != len(set(values)):
                problems.append("round %d: %d duplicated values" % (n, len(values) - len(set(values))))
            assert not problems, "\n".join(problems[:10]) + "\n" + b.log_tail()
    finally:
        b.stop()  # by its PID, also when a check above failed (the data stays for a look)
    shutil.rmtree(root)
    assert acked, "nothing was acknowledged"
    assert lost_total > 0, "no cut threw away unsynced data: the shim did not bite"
    print("power loss: %d cuts, %d acknowledged records all present, %d unsynced bytes thrown away"
          % (CUTS, len(acked), lost_total))
