"""curl as the client: binary and structured content mode, read back with GET."""
import json
import subprocess


def curl(*args, timeout=30):
    """Runs curl; returns (status, body bytes)."""
    p = subprocess.run(["curl", "-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    assert p.returncode == 0, "curl %s exited %d: %s" % (args, p.returncode, p.stderr.decode())
    body, _, code = p.stdout.rpartition(b"\n")
    return int(code), body


def test_curl_binary_mode(server):
    server.create_topic("curl.bin", 1)
    url = server.base + "/v1/topics/curl.bin/events"
    status, body = curl("-X", "POST", url,
                        "-H", "ce-specversion: 1.0", "-H", "ce-id: b-1", "-H", "ce-source: /curl",
                        "-H", "ce-type: com.example.bin", "-H", "ce-subject: order-7",
                        "-H", "ce-time: 2026-01-02T03:04:05Z", "-H", "ce-myext: hello",
                        "-H", "Content-Type: application/json",
                        "--data-binary", '{"amount": 42, "ok": true}')
    assert status == 200, body
    assert json.loads(body) == {"topic": "curl.bin", "partition": 0, "offset": 0}
    status, body = curl("-X", "POST", url,
                        "-H", "CE-SpecVersion: 1.0", "-H", "CE-ID: b-2", "-H", "CE-Source: /curl",
                        "-H", "CE-Type: com.example.bin", "-H", "Content-Type: text/plain",
                        "--data-binary", "plain text\nline two")
    assert status == 200, body
    assert json.loads(body) == {"topic": "curl.bin", "partition": 0, "offset": 1}

    evs = server.read_all("curl.bin", 0)
    assert len(evs) == 2, evs
    e0, e1 = evs
    assert e0["id"] == "b-1" and e0["source"] == "/curl" and e0["type"] == "com.example.bin", e0
    assert e0["specversion"] == "1.0" and e0["subject"] == "order-7" and e0["myext"] == "hello", e0
    assert e0["time"] == "2026-01-02T03:04:05Z", e0
    assert e0["datacontenttype"].startswith("application/json"), e0
    assert e0["data"] == {"amount": 42, "ok": True}, e0
    assert e0["partition"] == 0 and e0["offset"] == 0, e0
    assert e1["id"] == "b-2" and e1["datacontenttype"] == "text/plain", e1
    assert e1["data"] == "plain text\nline two", e1
    assert e1["offset"] == 1, e1


def test_curl_structured_mode(server):
    server.create_topic("curl.st", 2)
    url = server.base + "/v1/topics/curl.st/events"
    ev = {"specversion": "1.0", "id": "s-1", "source": "/curl/structured", "type": "com.example.st",
          "datacontenttype": "application/json", "partitionkey": "customer-9", "subject": "x",
          "data": {"list": [1, 2, 3], "nested": {"k": "v"}}}
    status, body = curl("-X", "POST", url, "-H", "Content-Type: application/cloudevents+json; charset=utf-8",
                        "--data-binary", json.dumps(ev))
    assert status == 200, body
    rcpt = json.loads(body)
    assert rcpt["topic"] == "curl.st" and rcpt["offset"] == 0 and rcpt["partition"] in (0, 1), rcpt
    # binary data travels as data_base64 in structured mode
    ev2 = {"specversion": "1.0", "id": "s-2", "source": "/curl/structured", "type": "com.example.st",
           "partitionkey": "customer-9", "datacontenttype": "application/octet-stream",
           "data_base64": "AAEC/f7/"}
    status, body = curl("-X", "POST", url, "-H", "Content-Type: application/cloudevents+json",
                        "--data-binary", json.dumps(ev2))
    assert status == 200, body
    rcpt2 = json.loads(body)
    assert rcpt2["partition"] == rcpt["partition"] and rcpt2["offset"] == 1, (rcpt, rcpt2)

    evs = server.read_all("curl.st", rcpt["partition"])
    assert [e["id"] for e in evs] == ["s-1", "s-2"], evs
    got = evs[0]
    for k in ("specversion", "id", "source", "type", "subject", "partitionkey", "data"):
        assert got[k] == ev[k], (k, got)
    assert got["datacontenttype"] == "application/json", got
    assert evs[1]["data_base64"] == "AAEC/f7/", evs[1]
    assert "data" not in evs[1], evs[1]
    other = 1 - rcpt["partition"]
    assert server.hwms("curl.st")[other] == 0
