"""The cloudevents npm SDK (HTTP.binary / HTTP.structured + fetch) as the client; HTTP.toEvent reads back."""
import json

from conftest import run_node


def sdk_events(prefix, n):
    return [{"id": "%s-%d" % (prefix, i), "source": "/sdk/" + prefix, "type": "com.example.sdk",
             "subject": "s%d" % i, "partitionkey": "k%d" % (i % 3), "myext": "v%d" % i,
             "datacontenttype": "application/json", "data": {"i": i, "text": "héllo %d" % i}}
            for i in range(n)]


def check_roundtrip(server, topic, mode):
    server.create_topic(topic, 3)
    specs = sdk_events(mode, 6)
    url = server.base + "/v1/topics/%s/events" % topic
    results = run_node(["send", url, mode], stdin=json.dumps(specs))
    assert len(results) == len(specs), results
    receipts = []
    for spec, res in zip(specs, results):
        assert res["status"] == 200, (spec, res)
        assert res["content_type"].startswith("application/json"), res
        rc = json.loads(res["body"])
        assert rc["topic"] == topic, rc
        receipts.append(rc)
    # same partitionkey -> same partition; dense offsets per partition
    by_key = {}
    for spec, rc in zip(specs, receipts):
        by_key.setdefault(spec["partitionkey"], set()).add(rc["partition"])
    assert all(len(v) == 1 for v in by_key.values()), by_key
    per_part = {}
    for rc in receipts:
        per_part.setdefault(rc["partition"], []).append(rc["offset"])
    for p, offs in per_part.items():
        assert offs == list(range(len(offs))), (p, offs)

    # Read back with the SDK's HTTP.toEvent (batch mode parser)
    for p in sorted(per_part):
        got = run_node(["parse", server.base + "/v1/topics/%s/partitions/%d/events?from=0" % (topic, p)])
        want = [s for s, rc in zip(specs, receipts) if rc["partition"] == p]
        assert [g["id"] for g in got] == [w["id"] for w in want], got
        for g, w, off in zip(got, want, per_part[p]):
            for k in ("source", "type", "subject", "partitionkey", "myext", "data"):
                assert g.get(k) == w[k], (k, g, w)
            assert g["specversion"] == "1.0", g
            assert g["datacontenttype"].startswith("application/json"), g
            assert int(g["partition"]) == p and int(g["offset"]) == off, g


def test_sdk_binary_mode(server):
    check_roundtrip(server, "sdk.binary", "binary")


def test_sdk_structured_mode(server):
    check_roundtrip(server, "sdk.structured", "structured")


def test_sdk_sees_http_status_on_error(server):
    """fetch (not the SDK's transport) exposes the 4xx for a well-formed event posted to no topic."""
    results = run_node(["send", server.base + "/v1/topics/absent/events", "binary"],
                       stdin=json.dumps(sdk_events("err", 1)))
    assert results[0]["status"] == 404, results
    assert json.loads(results[0]["body"])["error"] == "unknown_topic", results
