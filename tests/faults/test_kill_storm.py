"""kill -9 storm: an idempotent acks=all producer records every acknowledged offset while the broker is
killed with SIGKILL at random moments and restarted (KILLS times: 8 here, 200 in `make faults`). Then:
every acknowledged record is present at its offset and byte-identical, offsets are dense, and no value
appears twice (the idempotent producer's retries were deduplicated across restarts)."""
import os
import random
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from broker import Broker

KILLS = int(os.environ.get("KILLS", "8"))


def test_kill9_storm_idempotent_acks_all():
    rnd = random.Random(int(os.environ.get("STORM_SEED", "7")))
    b = Broker("--default-partitions", "3")
    bootstrap = b.bootstrap
    acked = {}  # value -> (partition, offset)
    failed = []
    lock = threading.Lock()
    stop = threading.Event()

    def produce():
        p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                      "linger.ms": 2, "message.timeout.ms": 120000, "reconnect.backoff.ms": 20,
                      "reconnect.backoff.max.ms": 200})

        def done(err, msg):
            with lock:
                if err:
                    failed.append((msg.value(), str(err)))
                else:
                    acked[msg.value()] = (msg.partition(), msg.offset())

        n = 0
        while not stop.is_set():
            try:
                p.produce("storm", key=b"k%d" % (n % 30), value=b"v-%08d-" % n + b"x" * 100, on_delivery=done)
                n += 1
            except BufferError:
                p.poll(0.05)
            if n % 100 == 0:
                p.poll(0)
                time.sleep(0.001)
        left = p.flush(120)
        assert left == 0, "%d messages never delivered" % left

    t = threading.Thread(target=produce)
    t.start()
    try:
        for _ in range(KILLS):
            time.sleep(rnd.uniform(0.1, 0.6))
            b.kill9()
            b.start()
        time.sleep(0.5)
    finally:
        stop.set()
        t.join(180)
    assert not t.is_alive(), "the producer did not finish"
    assert acked, "nothing was acknowledged"
    assert not failed, "deliveries failed: %r" % failed[:5]
    # Read everything back.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "storm-check", "enable.auto.commit": False})
    c.assign([TopicPartition("storm", p, 0) for p in range(3)])
    got = {p: {} for p in range(3)}
    expect_total = len(acked)
    deadline = time.time() + 60
    seen = 0
    while time.time() < deadline:
        batch = c.consume(5000, 1.0)
        for m in batch:
            if m.error():
                continue
            got[m.partition()][m.offset()] = m.value()
            seen += 1
        if not batch and seen >= expect_total:
            break
    c.close()
    b.stop()
    problems = []
    for value, (p, off) in acked.items():
        if got[p].get(off) != value:
            problems.append("acknowledged %r at %d/%d reads back as %r" % (value[:12], p, off, got[p].get(off)))
    for p in range(3):
        offs = sorted(got[p])
        if offs != list(range(len(offs))):
            problems.append("partition %d offsets are not dense" % p)
    values = [v for p in range(3) for v in got[p].values()]
    dups = len(values) - len(set(values))
    if dups:
        problems.append("%d duplicated values (idempotence failed across restarts)" % dups)
    assert not problems, "\n".join(problems[:10])
    print("storm: %d kills, %d acknowledged records all present, %d in the log, no duplicates"
          % (KILLS, len(acked), len(values)))
    b.remove()
