"""Full disk through the Kafka protocol: a broker whose data directory is on a small file system (a tmpfs,
and ext4 on a loop device) answers produce requests that no longer fit with KAFKA_STORAGE_ERROR,
acknowledges nothing it did not store, keeps serving, leaves no partial batch; after more space every
acknowledged record reads back intact and produce works again. (The HTTP and offline paths are tests/integration/test_enospc.sh and the HTTP suite.)

Needs root to mount; where it cannot mount, it says why and is skipped."""
import os
import subprocess
import tempfile
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from broker import Broker


class SmallDisk:
    """A mounted file system with about 3 MiB free: a tmpfs of 3 MiB, or ext4 on a loop device (16 MiB,
    most of it taken by a ballast file, so the real ext4 paths run: delayed allocation, preallocation,
    the journal). more_space() gives it room again: a bigger tmpfs, or the ballast deleted."""

    def __init__(self, kind):
        if os.geteuid() != 0:
            pytest.skip("mounting a small file system needs root")
        self.kind = kind
        self.path = tempfile.mkdtemp(prefix="factlog-enospc-")
        self.image = None
        if kind == "tmpfs":
            cmd = ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", self.path]
        else:
            self.image = self.path + ".img"
            with open(self.image, "wb") as f:
                f.truncate(16 << 20)
            subprocess.run(["mkfs.ext4", "-q", "-F", self.image], check=True, capture_output=True)
            cmd = ["mount", "-o", "loop", self.image, self.path]
        r = subprocess.run(cmd, capture_output=True)
        if r.returncode != 0:
            self.cleanup(mounted=False)
            pytest.skip("cannot mount a %s here: %s" % (kind, r.stderr.decode().strip()))
        if kind == "ext4":
            st = os.statvfs(self.path)
            free = st.f_bavail * st.f_frsize
            subprocess.run(["fallocate", "-l", str(free - (3 << 20)), os.path.join(self.path, "ballast")],
                           check=True)

    def more_space(self):
        if self.kind == "tmpfs":
            subprocess.run(["mount", "-o", "remount,size=64m", self.path], check=True)
        else:
            os.remove(os.path.join(self.path, "ballast"))

    def cleanup(self, mounted=True):
        if mounted:
            subprocess.run(["umount", self.path])
        os.rmdir(self.path)
        if self.image:
            os.remove(self.image)


@pytest.fixture(params=["tmpfs", "ext4"])
def disk(request):
    d = SmallDisk(request.param)
    try:
        yield d
    finally:
        d.cleanup()


def produce(bootstrap, values):
    """acks=all, no client retries (a full disk would only be retried until the timeout)."""
    acked, failed = {}, []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2, "retries": 0,
                  "message.timeout.ms": 10000, "batch.num.messages": 50})

    def done(err, msg):
        if err is None:
            acked[msg.offset()] = msg.value()
        else:
            failed.append(err)
    for v in values:
        while True:
            try:
                p.produce("full", value=v, partition=0, on_delivery=done)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(30) == 0
    return acked, failed


def read_all(bootstrap, n):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "check", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition("full", 0, 0)])
        got = {}
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                got[m.offset()] = m.value()
        lo, hi = c.get_watermark_offsets(TopicPartition("full", 0), timeout=10)
        return got, hi
    finally:
        c.close()


def test_full_disk_through_kafka_produce(disk):
    b = Broker(root=disk.path)
    try:
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        a.create_topics([NewTopic("full", 1, 1, config={"segment.bytes": "1048576"})])["full"].result(10)
        values = [b"%08d" % i + b"x" * 1016 for i in range(8000)]  # 8 MB into 3 MiB
        acked, failed = produce(b.bootstrap, values)
        assert failed, "8 MB fitted into a file system with 3 MiB free"
        assert all(e.code() == KafkaError.KAFKA_STORAGE_ERROR for e in failed), {str(e) for e in failed}
        assert len(acked) > 500, "only %d records fitted" % len(acked)
        assert sorted(acked) == list(range(len(acked))), "acknowledged offsets are dense from 0"
        # the broker keeps serving: metadata and reads work on the full disk
        got, hi = read_all(b.bootstrap, len(acked))
        assert hi == len(acked), "high watermark %d, %d acknowledged: a partial or unacknowledged batch" % (
            hi, len(acked))
        assert got == acked
        b.stop()
        assert b.proc.returncode == 0, b.log_tail()

        # more space: everything acknowledged is there after a restart, and produce works again
        disk.more_space()
        b.start()
        got, hi = read_all(b.bootstrap, len(acked))
        assert got == acked and hi == len(acked)
        more, failed2 = produce(b.bootstrap, values[:100])
        assert not failed2 and sorted(more) == list(range(len(acked), len(acked) + 100)), failed2[:3]
    finally:
        b.stop()
        log = b.log_tail(20000)
        assert "No space left on device" in log or "full" in log.lower(), log[-2000:]
