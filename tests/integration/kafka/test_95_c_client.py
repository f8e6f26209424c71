"""A C program on librdkafka against the broker: bench/bench_kafka (built as build/bench/bench_kafka
next to the factlog binary; BENCH_KAFKA overrides the path).

It produces for a few seconds with acks=all to a fresh topic, then consumes everything back with
--expect (each consumer thread is assigned every partition from offset 0), and its RESULT line must
show every record delivered and read, with no offset gap, no bad value and no client error. The
test fails (never skips) when the program is missing.
"""
import os

import pytest

import klib

PARTITIONS = 4


def bench_binary():
    b = os.environ.get("BENCH_KAFKA")
    if not b:
        factlog = os.environ.get("FACTLOG_BIN", "build/factlog")
        b = os.path.join(os.path.dirname(os.path.abspath(factlog)), "bench", "bench_kafka")
    if not os.access(b, os.X_OK):
        pytest.fail("the librdkafka C client %s is missing or not executable: build it with "
                    "`ninja -C build` (bench/bench_kafka.c), or point BENCH_KAFKA at it" % b,
                    pytrace=False)
    return b


def run_bench(binary, args, timeout):
    cp = klib.run([binary] + args, timeout=timeout)
    out = cp.stdout.decode("utf-8", "replace")
    err = cp.stderr.decode("utf-8", "replace")
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, "bench_kafka %s printed %d RESULT lines\nstdout:\n%s\nstderr:\n%s" % (
        " ".join(args), len(lines), out[-3000:], err[-3000:])
    res = dict(kv.split("=", 1) for kv in lines[0].split()[1:])
    return res, out, err


def test_c_client_produce_acks_all_then_consume_everything(broker):
    binary = bench_binary()
    topic = "c-client-bench"
    common = ["--brokers", broker.bootstrap, "--topic", topic]
    res, out, err = run_bench(binary, common + [
        "--produce", "--partitions", str(PARTITIONS), "--acks", "all", "--seconds", "3",
        "--record-bytes", "512", "--rate-mbps", "20", "--linger-ms", "5"], timeout=120)
    ctx = "\nstdout:\n%s\nstderr:\n%s" % (out[-2000:], err[-2000:])
    delivered = int(res["delivered"])
    assert res["mode"] == "produce" and int(res["failed"]) == 0 and \
        int(res["client_errors"]) == 0, "produce RESULT %r%s" % (res, ctx)
    assert delivered > 10_000, "only %d records delivered in 3 s at 20 MB/s%s" % (delivered, ctx)
    assert "created topic %s with %d partitions" % (topic, PARTITIONS) in out, \
        "the topic was not created fresh%s" % ctx

    # The log holds exactly what was acknowledged: offsets 0..n-1 in every partition.
    from confluent_kafka import TopicPartition
    c = klib.ck_consumer(broker.bootstrap)
    try:
        marks = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                 for p in range(PARTITIONS)]
    finally:
        c.close()
    assert all(lo == 0 for lo, _ in marks) and sum(hi for _, hi in marks) == delivered, \
        "watermarks %r, want low 0 and %d records in total" % (marks, delivered)

    # Two consumer threads, each reading every partition from the start.
    res, out, err = run_bench(binary, common + [
        "--consume", "--consumers", "2", "--expect", str(delivered), "--seconds", "90",
        "--record-bytes", "512"], timeout=150)
    ctx = "\nstdout:\n%s\nstderr:\n%s" % (out[-2000:], err[-2000:])
    want = {"mode": "consume", "consumed": str(2 * delivered), "expected_each": str(delivered),
            "complete": "1", "gaps": "0", "bad": "0", "msg_errors": "0", "client_errors": "0"}
    have = {k: res.get(k) for k in want}
    assert have == want, "consume RESULT %r, want %r%s" % (have, want, ctx)
    assert "INCOMPLETE" not in out and "offset" not in err, "bench_kafka reported problems%s" % ctx
