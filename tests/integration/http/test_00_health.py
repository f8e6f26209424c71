"""Health, readiness, metrics (promtool) and topic administration."""
import re
import subprocess

from conftest import ce
from test_40_kafka import kafka_produce


def test_healthz_readyz(server):
    for path in ("/healthz", "/readyz"):
        r = server.get(path)
        assert r.status == 200, "%s: %r" % (path, r)
        assert r.json() == {"status": "ok"}


def scrape_after_traffic(server):
    server.create_topic("metrics.a", 3)
    server.create_topic("metrics-b", 2)
    r = server.post_batch("metrics.a", [ce(i) for i in range(10)])
    assert r.status == 200, r
    assert server.post_structured("metrics.a", ce(0)).status == 200  # a duplicate
    assert server.get("/v1/topics/nope").status == 404               # a 4xx
    kafka_produce(server.bootstrap, "metrics-b", [{"value": b"k%d" % i} for i in range(5)], {"acks": "all"})
    kafka_produce(server.bootstrap, "metrics-b", [{"value": b"one"}], {"acks": 1})
    r = server.get("/metrics")
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    return r.body.decode()


def test_metrics_promtool(server):
    text = scrape_after_traffic(server)
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, "promtool check metrics exited %d:\n%s\n--- scrape ---\n%s" % (
        p.returncode, out, text)
    # The values say what happened.
    samples = dict(re.findall(r"^(\S+) (\S+)$", text, re.M))
    assert samples["factlog_http_events_total"] == "11", text
    assert samples["factlog_http_duplicate_events_total"] == "1", text
    assert int(samples["factlog_http_client_errors_total"]) >= 1, text
    hwm = sum(int(samples['factlog_partition_high_watermark{topic="metrics.a",partition="%d"}' % p])
              for p in range(3))
    assert hwm == 10, text
    assert 'factlog_partition_high_watermark{topic="metrics-b",partition="1"}' in samples, text
    # HTTP produce latency: the batch and the duplicate post above were answered with receipts.
    assert int(samples["factlog_http_produce_duration_seconds_count"]) >= 2, text
    assert samples['factlog_http_produce_duration_seconds_bucket{le="+Inf"}'] == \
        samples["factlog_http_produce_duration_seconds_count"], text
    # Kafka produce latency, per acks: at least one request each, and every one within the +Inf bucket.
    for acks in ("1", "all"):
        n = int(samples['factlog_kafka_produce_duration_seconds_count{acks="%s"}' % acks])
        assert n >= 1, text
        assert samples['factlog_kafka_produce_duration_seconds_bucket{acks="%s",le="+Inf"}' % acks] == str(n), text
        assert float(samples['factlog_kafka_produce_duration_seconds_sum{acks="%s"}' % acks]) > 0, text


def test_metrics_families_are_contiguous(server):
    """The text exposition format: "All lines for a given metric must be provided as one single group,
    with the optional HELP and TYPE lines first". promtool 2.42's parser does not check this; OpenMetrics
    parsers do."""
    text = scrape_after_traffic(server)
    order = []  # family names in order of appearance (HELP/TYPE/sample lines)
    for line in text.splitlines():
        if not line:
            continue
        m = re.match(r"# (?:HELP|TYPE) (\S+)", line)
        name = m.group(1) if m else re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", line).group(1)
        if not m and order and re.sub(r"_(bucket|sum|count)$", "", name) == order[-1]:
            name = order[-1]  # a histogram's series belong to its family
        if not order or order[-1] != name:
            order.append(name)
    repeated = sorted({n for n in order if order.count(n) > 1})
    assert not repeated, ("metric families split into several groups: %s\n--- scrape ---\n%s"
                          % (", ".join(repeated), text))


def test_topic_admin(server):
    t = server.create_topic("admin.t1", 4, {"retention.ms": "3600000"})
    assert t["name"] == "admin.t1"
    assert [p["partition"] for p in t["partitions"]] == [0, 1, 2, 3]
    assert all(p["high_watermark"] == 0 and p["log_start"] == 0 for p in t["partitions"])
    server.create_topic("admin.t2")
    r = server.get("/v1/topics")
    assert r.status == 200, r
    names = sorted(x["name"] for x in r.json()["topics"])
    assert names == ["admin.t1", "admin.t2"], r.json()
    assert server.topic("admin.t2")["partitions"][0]["partition"] == 0
    r = server.request("POST", "/v1/topics", {"name": "admin.t1", "partitions": 1})
    assert r.status == 409 and r.json()["error"] == "topic_exists", r
    r = server.request("DELETE", "/v1/topics/admin.t2")
    assert r.status == 200, r
    assert server.get("/v1/topics/admin.t2").status == 404
    assert sorted(x["name"] for x in server.get("/v1/topics").json()["topics"]) == ["admin.t1"]
