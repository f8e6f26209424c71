"""ListOffsets by timestamp (offsets_for_times / kcat -Q / fetchTopicOffsetsByTimestamp), and the
earliest/latest offsets.

Partition p holds M records; record j has timestamp BASE + p*SPAN + STEP*j. The answer for a query
ts is the first offset whose timestamp is >= ts, or "none" (-1) past the last record.
"""
import re

import pytest

import klib

P = 4
M = 300
STEP = 10
SPAN = 100_000


@pytest.fixture
def ts_topic(broker):
    t = "ts-topic"
    base = (klib.now_ms() - 7_200_000) // 1000 * 1000
    klib.ck_create_topic(broker.bootstrap, t, P)
    recs = []
    for p in range(P):
        for j in range(M):
            i = p * M + j
            recs.append(klib.Rec(i, b"p%d" % p, j, b"p%d|%d|%d|" % (p, j, i), None,
                                 base + p * SPAN + STEP * j))
    # Several produce calls so a partition holds several batches.
    for chunk in range(0, len(recs), 250):
        klib.ck_produce_ok(broker.bootstrap, t, recs[chunk:chunk + 250],
                           partition_of=lambda r: r.i // M, conf={"linger.ms": 5})
    return t, base


def ts_of(base, p, j):
    return base + p * SPAN + STEP * j


def expected(base, p, q):
    """First offset in partition p with timestamp >= q, or None."""
    for j in range(M):
        if ts_of(base, p, j) >= q:
            return j
    return None


def queries(base, p):
    first, last = ts_of(base, p, 0), ts_of(base, p, M - 1)
    return [first - 5_000, first, first + 1, ts_of(base, p, 57), ts_of(base, p, 57) + 1,
            ts_of(base, p, 58) - 1, ts_of(base, p, 200) + 9, last, last + 1, last + 50_000]


def test_confluent_offsets_for_times(broker, ts_topic):
    from confluent_kafka import TopicPartition
    t, base = ts_topic
    c = klib.ck_consumer(broker.bootstrap)
    problems = []
    try:
        # One timestamp per partition and request: a partition may appear once in ListOffsets.
        for k in range(len(queries(base, 0))):
            ask = [TopicPartition(t, p, queries(base, p)[k]) for p in range(P)]
            res = c.offsets_for_times(ask, timeout=15)
            assert sorted(tp.partition for tp in res) == list(range(P)), res
            for tp in res:
                p = tp.partition
                q = queries(base, p)[k]
                want = expected(base, p, q)
                want = -1 if want is None else want
                if tp.error is not None or tp.offset != want:
                    problems.append("p%d ts=%d (base+%d): offset %s error %s, want %d"
                                    % (p, q, q - base, tp.offset, tp.error, want))
        for p in range(P):
            lo, hi = c.get_watermark_offsets(TopicPartition(t, p), timeout=10, cached=False)
            if (lo, hi) != (0, M):
                problems.append("p%d watermarks (%d, %d), want (0, %d)" % (p, lo, hi, M))
    finally:
        c.close()
    assert not problems, "\n".join(problems)


def test_kafka_python_offsets_for_times(broker, ts_topic):
    from kafka import KafkaConsumer, TopicPartition
    t, base = ts_topic
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                      request_timeout_ms=20000)
    problems = []
    try:
        tps = [TopicPartition(t, p) for p in range(P)]
        for k in range(len(queries(base, 0))):
            ask = {TopicPartition(t, p): queries(base, p)[k] for p in range(P)}
            res = c.offsets_for_times(ask)
            for tp, q in ask.items():
                want = expected(base, tp.partition, q)
                r = res.get(tp)
                if want is None:
                    if r is not None:
                        problems.append("p%d ts=base+%d: %r, want None" % (tp.partition, q - base,
                                                                          r))
                elif r is None or r.offset != want or r.timestamp != ts_of(base, tp.partition,
                                                                            want):
                    problems.append("p%d ts=base+%d: %r, want offset %d timestamp %d"
                                    % (tp.partition, q - base, r, want,
                                       ts_of(base, tp.partition, want)))
        b, e = c.beginning_offsets(tps), c.end_offsets(tps)
        for tp in tps:
            if (b[tp], e[tp]) != (0, M):
                problems.append("p%d beginning/end (%d, %d), want (0, %d)" % (tp.partition, b[tp],
                                                                             e[tp], M))
    finally:
        c.close()
    assert not problems, "\n".join(problems)


def test_kcat_query_offsets_for_times(broker, ts_topic):
    t, base = ts_topic
    # kcat -Q answers one offset per topic:partition, so ask each partition's queries in turn.
    problems = []
    for k in range(len(queries(base, 0))):
        argv = ["kcat", "-Q", "-b", broker.bootstrap]
        for p in range(P):
            argv += ["-t", "%s:%d:%d" % (t, p, queries(base, p)[k])]
        out = klib.run(argv, 30).stdout.decode()
        found = {int(m.group(1)): int(m.group(2))
                 for m in re.finditer(r"^%s \[(\d+)\]\s+offset (-?\d+)" % re.escape(t), out, re.M)}
        for p in range(P):
            q = queries(base, p)[k]
            want = expected(base, p, q)
            want = -1 if want is None else want
            if found.get(p) != want:
                problems.append("p%d ts=base+%d: kcat says %r, want %d" % (p, q - base,
                                                                           found.get(p), want))
        if not found:
            problems.append("kcat -Q printed nothing parseable: %r" % out[:500])
    assert not problems, "\n".join(problems)


def test_kafkajs_fetch_topic_offsets_by_timestamp(broker, ts_topic):
    t, base = ts_topic
    qs = sorted({q for p in range(P) for q in queries(base, p)})
    res = klib.kjs(broker.bootstrap, [{"op": "fetchTopicOffsetsByTimestamp", "topic": t,
                                       "timestamps": qs},
                                      {"op": "fetchTopicOffsets", "topic": t}])
    problems = []
    for q in qs:
        answer = {int(x["partition"]): int(x["offset"]) for x in res[0]["byTimestamp"][str(q)]}
        for p in range(P):
            want = expected(base, p, q)
            want = M if want is None else want  # kafkajs substitutes the high watermark for -1
            if answer.get(p) != want:
                problems.append("p%d ts=base+%d: %r, want %d" % (p, q - base, answer.get(p), want))
    for o in res[1]["offsets"]:
        if (int(o["low"]), int(o["high"])) != (0, M):
            problems.append("fetchTopicOffsets %r, want low 0 high %d" % (o, M))
    assert not problems, "\n".join(problems)
