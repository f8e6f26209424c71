"""fsync failure: no acknowledgement for unflushed data, no retry, the partition stops with a clear error,
and a restart (without the fault) recovers every acknowledged record cleanly.

An LD_PRELOAD shim (fsync_fail.so) makes fdatasync/fsync fail while a flag file exists."""
import os
import tempfile
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from broker import Broker

SHIM = os.environ["FACTLOG_FSYNC_SHIM"]


def produce(bootstrap, topic, values, timeout_ms=4000):
    acked, failed = [], []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1,
                  "message.timeout.ms": timeout_ms, "retries": 1000, "retry.backoff.ms": 50})

    def done(err, msg):
        (failed if err else acked).append((msg.value(), None if err else msg.offset(), err))

    for v in values:
        p.produce(topic, value=v, partition=0, on_delivery=done)
    p.flush(timeout_ms / 1000 + 10)
    return acked, failed


def read_all(bootstrap, topic, expect, timeout=20):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "fsync-check", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got, deadline = {}, time.time() + timeout
    while len(got) < expect and time.time() < deadline:
        for m in c.consume(1000, 0.5):
            if not m.error():
                got[m.offset()] = m.value()
    c.close()
    return got


def test_fsync_failure_is_fatal_and_recovers():
    root = tempfile.mkdtemp(prefix="factlog-fault-")
    flag = os.path.join(root, "fail")
    b = Broker(env=dict(os.environ, LD_PRELOAD=SHIM, FACTLOG_FAIL_FSYNC_FLAG=flag), root=root)
    bootstrap = b.bootstrap
    try:
        acked1, failed1 = produce(bootstrap, "f", [b"before-%d" % i for i in range(500)])
        assert len(acked1) == 500 and not failed1, failed1[:3]
        open(flag, "w").close()  # from now on the disk fails every flush
        acked2, failed2 = produce(bootstrap, "f", [b"during-%d" % i for i in range(200)])
        assert not acked2, "a write was acknowledged although fdatasync failed: %r" % acked2[:3]
        assert failed2, "the producer saw no error"
        assert "FAILED after an I/O error" in b.log_tail(100000), b.log_tail()
        # Never retried: removing the fault does not bring the partition back while running.
        os.unlink(flag)
        acked3, failed3 = produce(bootstrap, "f", [b"after-fault-%d" % i for i in range(20)], 3000)
        assert not acked3, "the failed partition accepted writes again without a restart"
    finally:
        if os.path.exists(flag):
            os.unlink(flag)
        b.stop()
    # A restart recovers from disk: every acknowledged record is there, and writes work again.
    b.start(dict(os.environ))
    try:
        got = read_all(bootstrap, "f", 500)
        for value, offset, _ in acked1:
            assert got.get(offset) == value, "acknowledged offset %d lost or changed" % offset
        acked4, failed4 = produce(bootstrap, "f", [b"after-restart-%d" % i for i in range(50)])
        assert len(acked4) == 50 and not failed4, failed4[:3]
    finally:
        b.remove()
