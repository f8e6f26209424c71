"""Bad input: the right 4xx with a JSON {"error", "message"} naming the problem, nothing appended, and
the server keeps serving."""
import json
import re

import pytest

from conftest import ce

TOPIC = "err.t"
EV = "/v1/topics/%s/events" % TOPIC
ST = {"Content-Type": "application/cloudevents+json"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}
BIN = {"ce-specversion": "1.0", "ce-id": "b1", "ce-source": "/err", "ce-type": "t",
       "Content-Type": "application/json"}


def without(d, key):
    return {k: v for k, v in d.items() if k != key}


def js(o):
    return json.dumps(o).encode()


# name: (method, path, headers, body, status, error code, text the message must contain)
CASES = {
    "structured missing id": ("POST", EV, ST, js(without(ce(1), "id")), 400, "invalid_event", "'id'"),
    "structured missing source": ("POST", EV, ST, js(without(ce(1), "source")), 400, "invalid_event",
                                  "'source'"),
    "structured missing type": ("POST", EV, ST, js(without(ce(1), "type")), 400, "invalid_event", "'type'"),
    "structured missing specversion": ("POST", EV, ST, js(without(ce(1), "specversion")), 400,
                                       "invalid_event", "'specversion'"),
    "structured empty id": ("POST", EV, ST, js(ce("")), 400, "invalid_event", "'id'"),
    "structured specversion 0.3": ("POST", EV, ST, js(ce(1, specversion="0.3")), 400, "invalid_event",
                                   "specversion"),
    "structured bad attribute name": ("POST", EV, ST, js(ce(1, **{"Bad-Name": "x"})), 400, "invalid_event",
                                      "attribute name"),
    "structured object attribute": ("POST", EV, ST, js(ce(1, ext={"a": 1})), 400, "invalid_event",
                                    "attribute value"),
    "structured not an object": ("POST", EV, ST, b'["x"]', 400, "invalid_event", "object"),
    "structured malformed JSON": ("POST", EV, ST, b'{"specversion": "1.0", "id": ', 400, "invalid_event",
                                  "JSON"),
    "batch malformed JSON": ("POST", EV, BATCH, b'[{"id": "1"},', 400, "invalid_event", "JSON"),
    "batch not an array": ("POST", EV, BATCH, js(ce(1)), 400, "invalid_event", "array"),
    "batch empty": ("POST", EV, BATCH, b"[]", 400, "invalid_event", "array"),
    "batch one bad event": ("POST", EV, BATCH, js([ce(1), ce(2), without(ce(3), "source"), ce(4)]), 400,
                            "invalid_event", "'source'"),
    "binary missing id": ("POST", EV, without(BIN, "ce-id"), b"{}", 400, "invalid_event", "'id'"),
    "binary missing source": ("POST", EV, without(BIN, "ce-source"), b"{}", 400, "invalid_event",
                              "'source'"),
    "binary missing type": ("POST", EV, without(BIN, "ce-type"), b"{}", 400, "invalid_event", "'type'"),
    # Binary mode is every request whose Content-Type is not a CloudEvents format (CloudEvents HTTP
    # binding, section 3); with ce-* headers present this is a missing attribute, not a media type problem.
    "binary missing specversion": ("POST", EV, without(BIN, "ce-specversion"), b"{}", 400, "invalid_event",
                                   "'specversion'"),
    "binary specversion 0.3": ("POST", EV, dict(BIN, **{"ce-specversion": "0.3"}), b"{}", 400,
                               "invalid_event", "specversion"),
    "wrong content type json": ("POST", EV, {"Content-Type": "application/json"}, js(ce(1)), 415,
                                "unsupported_media_type", "Content-Type"),
    "wrong content type text": ("POST", EV, {"Content-Type": "text/plain"}, b"hello", 415,
                                "unsupported_media_type", "Content-Type"),
    "no content type": ("POST", EV, {}, js(ce(1)), 415, "unsupported_media_type", "Content-Type"),
    "unknown topic structured": ("POST", "/v1/topics/nope/events", ST, js(ce(1)), 404, "unknown_topic",
                                 "topic"),
    "unknown topic binary": ("POST", "/v1/topics/nope/events", BIN, b"{}", 404, "unknown_topic", "topic"),
    "unknown topic read": ("GET", "/v1/topics/nope/partitions/0/events", {}, None, 404, "unknown_partition",
                           "topic"),
    "unknown partition read": ("GET", "/v1/topics/%s/partitions/7/events" % TOPIC, {}, None, 404,
                               "unknown_partition", "partition"),
    "bad from": ("GET", "/v1/topics/%s/partitions/0/events?from=abc" % TOPIC, {}, None, 400, "bad_request",
                 "from"),
    "bad limit": ("GET", "/v1/topics/%s/partitions/0/events?limit=0" % TOPIC, {}, None, 400, "bad_request",
                  "limit"),
    "unknown topic GET": ("GET", "/v1/topics/nope", {}, None, 404, "unknown_topic", "topic"),
    "unknown topic DELETE": ("DELETE", "/v1/topics/nope", {}, None, 404, "unknown_topic", ""),
    "unknown route": ("GET", "/v2/things", {}, None, 404, "not_found", "route"),
    "unknown route under topic": ("GET", "/v1/topics/%s/whatever" % TOPIC, {}, None, 404, "not_found",
                                  "route"),
    "unknown route POST": ("POST", "/v1/events", ST, js(ce(1)), 404, "not_found", "route"),
    "PUT events": ("PUT", EV, ST, js(ce(1)), 405, "method_not_allowed", "POST"),
    "POST read": ("POST", "/v1/topics/%s/partitions/0/events" % TOPIC, ST, js(ce(1)), 405,
                  "method_not_allowed", "GET"),
    "PUT topics": ("PUT", "/v1/topics", {"Content-Type": "application/json"}, b"{}", 405,
                   "method_not_allowed", "GET"),
    "create topic malformed": ("POST", "/v1/topics", {"Content-Type": "application/json"}, b"{nope", 400,
                               "bad_request", "name"),
    "create topic 0 partitions": ("POST", "/v1/topics", {"Content-Type": "application/json"},
                                  js({"name": "z", "partitions": 0}), 400, "invalid_partitions",
                                  "partitions"),
    "create topic bad name": ("POST", "/v1/topics", {"Content-Type": "application/json"},
                              js({"name": "a/b c", "partitions": 1}), 400, "invalid_topic", "name"),
}


def counters(server):
    text = server.get("/metrics").body.decode()
    return dict(re.findall(r"^(factlog_http_\w+) (\d+)$", text, re.M))


def check_error_case(server, method, path, headers, body, status, code, text):
    server.create_topic(TOPIC, 2)
    assert server.post_structured(TOPIC, ce("seed", source="/seed")).status == 200
    topics_before = sorted(t["name"] for t in server.get("/v1/topics").json()["topics"])
    hwms_before = server.hwms(TOPIC)
    events_before = counters(server)["factlog_http_events_total"]

    r = server.request(method, path, body, headers)
    assert r.status == status, "want HTTP %d, got %r" % (status, r)
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    b = r.json()
    assert isinstance(b, dict) and isinstance(b.get("error"), str) and isinstance(b.get("message"), str), b
    assert b["error"] == code, b
    assert text.lower() in b["message"].lower(), "message %r does not name %r" % (b["message"], text)

    # nothing appended, no topic created or deleted
    assert server.hwms(TOPIC) == hwms_before, (server.hwms(TOPIC), hwms_before)
    assert counters(server)["factlog_http_events_total"] == events_before
    assert sorted(t["name"] for t in server.get("/v1/topics").json()["topics"]) == topics_before
    # and the server still serves
    assert server.get("/healthz").status == 200
    r = server.post_structured(TOPIC, ce("after", source="/after"))
    assert r.status == 200, r
    assert sum(server.hwms(TOPIC).values()) == sum(hwms_before.values()) + 1


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(server, case):
    check_error_case(server, *CASES[case])


BIG = 4096


@pytest.mark.parametrize("case", ["structured", "binary", "batch", "unknown topic"])
def test_body_too_large(make_server, case):
    server = make_server("--max-body-bytes", str(BIG))
    big = "x" * (BIG * 3)
    path, headers, body = {
        "structured": (EV, ST, js(ce(1, data=big))),
        "binary": (EV, BIN, js({"d": big})),
        "batch": (EV, BATCH, js([ce(i, data=big[:1000]) for i in range(12)])),
        "unknown topic": ("/v1/topics/nope/events", ST, js(ce(1, data=big))),
    }[case]
    check_error_case(server, "POST", path, headers, body, 413, "body_too_large", "limit")
    # just under the limit is fine
    ok = js(ce("fits", data="y" * (BIG - 200)))
    assert len(ok) <= BIG
    r = server.request("POST", EV, ok, ST)
    assert r.status == 200, r
