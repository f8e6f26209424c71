"""fsync failure: no acknowledgement for unflushed data, no retry, the partition stops with a clear error,
and a restart (without the fault) recovers every acknowledged record cleanly.

An LD_PRELOAD shim (fsync_fail.so) makes fdatasync/fsync fail while a flag file exists."""
import os
import signal
import socket
import subprocess
import tempfile
import time

from confluent_kafka import Consumer, Producer, TopicPartition

BIN = os.environ["FACTLOG_BIN"]
SHIM = os.environ["FACTLOG_FSYNC_SHIM"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(data, port, log, env):
    proc = subprocess.Popen([BIN, "serve", "--data", data, "--kafka-listen", "127.0.0.1:%d" % port,
                             "--http-listen", "127.0.0.1:0", "--auto-create-topics", "--log-level", "info"],
                            stderr=open(log, "ab"), env=env)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            assert proc.poll() is None, "the server exited: " + open(log).read()[-2000:]
            time.sleep(0.05)
    raise AssertionError("the server did not start")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


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
    data, log, flag = os.path.join(root, "data"), os.path.join(root, "server.log"), os.path.join(root, "fail")
    port = free_port()
    bootstrap = "127.0.0.1:%d" % port
    env = dict(os.environ, LD_PRELOAD=SHIM, FACTLOG_FAIL_FSYNC_FLAG=flag)
    proc = start(data, port, log, env)
    try:
        acked1, failed1 = produce(bootstrap, "f", [b"before-%d" % i for i in range(500)])
        assert len(acked1) == 500 and not failed1, failed1[:3]
        open(flag, "w").close()  # from now on the disk fails every flush
        acked2, failed2 = produce(bootstrap, "f", [b"during-%d" % i for i in range(200)])
        assert not acked2, "a write was acknowledged although fdatasync failed: %r" % acked2[:3]
        assert failed2, "the producer saw no error"
        text = open(log).read()
        assert "FAILED after an I/O error" in text, text[-3000:]
        # Never retried: removing the fault does not bring the partition back while running.
        os.unlink(flag)
        acked3, failed3 = produce(bootstrap, "f", [b"after-fault-%d" % i for i in range(20)], 3000)
        assert not acked3, "the failed partition accepted writes again without a restart"
    finally:
        if os.path.exists(flag):
            os.unlink(flag)
        stop(proc)
    # A restart recovers from disk: every acknowledged record is there, and writes work again.
    proc = start(data, port, log, dict(os.environ))
    try:
        got = read_all(bootstrap, "f", 500)
        for value, offset, _ in acked1:
            assert got.get(offset) == value, "acknowledged offset %d lost or changed" % offset
        acked4, failed4 = produce(bootstrap, "f", [b"after-restart-%d" % i for i in range(50)])
        assert len(acked4) == 50 and not failed4, failed4[:3]
    finally:
        stop(proc)
    subprocess.run(["rm", "-rf", root])
