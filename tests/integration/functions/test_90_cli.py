"""The app file's errors, `factlog deploy`, `factlog functions list|describe|logs`, and the wait endpoint on
a function's group (read-your-writes)."""
import json
import os
import subprocess

from conftest import factlog_bin, handler_cmd, read_out, wait_until
from flserver import Server

APP = """
streams:
  carts: {{ partitions: 2 }}
functions:
  cart:
    run: {run}
    triggers:
      - stream: carts
        start: earliest
"""


def run_cli(*args, timeout=30):
    p = subprocess.run([factlog_bin()] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_invalid_app_names_line_and_field(tmp_path):
    bad = tmp_path / "factlog.yml"
    bad.write_text("functions:\n  f:\n    run: ./x\n    triggers:\n      - stream: s\n        ordering: sideways\n")
    rc, out, err = run_cli("serve", "--data", str(tmp_path / "d"), "--app", str(bad),
                           "--kafka-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
    assert rc == 1
    assert "factlog.yml:6:" in err and "functions.f.triggers[0].ordering" in err, err
    rc, out, err = run_cli("deploy", str(bad), "--url", "http://127.0.0.1:1")
    assert rc == 1 and "functions.f.triggers[0].ordering" in err
    rc, out, err = run_cli("serve", "--data", str(tmp_path / "d"), "--app", str(tmp_path / "missing.yml"))
    assert rc == 1 and "missing.yml" in err


def test_deploy_list_describe_logs_and_wait(factlog_ledger, tmp_path):
    lg = factlog_ledger
    out = os.path.join(lg.root, "out.jsonl")
    lg.start(APP.format(run=handler_cmd(out)), {"carts": 2})
    url = lg.server.base
    rc, text, err = run_cli("functions", "list", "--url", url)
    assert rc == 0, err
    assert "cart" in text and "NAME" in text
    # read-your-writes: a receipt, then wait until the function's group has committed past it
    r = lg.server.post_structured("carts", {"specversion": "1.0", "id": "a1", "source": "/t", "type": "add",
                                            "partitionkey": "u1", "data": {"sku": 1}})
    assert r.status == 200, r
    rc0 = r.json()
    rcpt = rc0["receipts"][0] if "receipts" in rc0 else rc0
    w = lg.server.get("/v1/groups/cart/wait?topic=carts&partition=%d&offset=%d&timeout_ms=20000"
                      % (rcpt["partition"], rcpt["offset"]))
    assert w.status == 200, w
    assert any(x["data"].get("sku") == 1 for x in read_out(out)), "waited until the function processed it"
    rc, text, err = run_cli("functions", "describe", "cart", "--url", url)
    assert rc == 0, err
    d = json.loads(text)
    assert d["name"] == "cart" and d["triggers"][0]["group"] == "cart"
    assert d["stats"]["events_ok"] >= 1 and d["invocations"] >= 1
    rc, text, err = run_cli("functions", "logs", "cart", "--url", url)
    assert rc == 0 and "cold start" in text, text
    rc, text, err = run_cli("functions", "describe", "nope", "--url", url)
    assert rc == 1 and "no such function" in err
    # deploy: a second function, the first unchanged and still running
    out2 = os.path.join(lg.root, "out2.jsonl")
    app2 = lg.app_path  # the same file, so cart (same directory, same definition) is unchanged
    open(app2, "w").write(APP.format(run=handler_cmd(out)) + """  audit:
    run: {run}
    triggers:
      - stream: carts
        start: earliest
""".format(run=handler_cmd(out2)))
    rc, text, err = run_cli("deploy", app2, "--url", url)
    assert rc == 0, err
    wait_until(lambda: len(read_out(out2)) >= 1, 30, "the deployed function to catch up")
    names = [f["name"] for f in lg.server.get("/v1/functions").json()["functions"]]
    assert sorted(names) == ["audit", "cart"]
    assert lg.describe("cart")["invocations"] >= 1, "cart kept running across the deploy"


def test_deploy_starts_functions_on_a_server_without_app(tmp_path):
    s = Server(factlog_bin(), str(tmp_path))
    s.start()
    try:
        out = str(tmp_path / "out.jsonl")
        app = tmp_path / "factlog.yml"
        app.write_text(APP.format(run=handler_cmd(out)))
        assert s.get("/v1/functions").json() == {"functions": []}
        rc, text, err = run_cli("deploy", str(app), "--url", s.base)
        assert rc == 0, err
        s.post_structured("carts", {"specversion": "1.0", "id": "x", "source": "/t", "type": "add",
                                    "data": {"sku": 9}})
        wait_until(lambda: len(read_out(out)) >= 1, 30, "processing after deploy")
    finally:
        s.stop()


def test_deploy_needs_a_yaml_content_type(factlog_ledger):
    lg = factlog_ledger
    lg.start(APP.format(run=handler_cmd(os.path.join(lg.root, "o.jsonl"))), {"carts": 2})
    r = lg.server.request("POST", "/v1/app?path=/tmp/x.yml", "functions: {}\n", {"Content-Type": "text/plain"})
    assert r.status == 415 and r.json()["error"] == "unsupported_media_type"
    r = lg.server.request("POST", "/v1/app?path=/tmp/x.yml", "functions: [\n", {"Content-Type": "application/yaml"})
    assert r.status == 400 and "x.yml:" in r.json()["message"]
