"""A `factlog serve` process for integration tests, shared by the HTTP and functions suites.

Every server listens on free 127.0.0.1 ports (Kafka and HTTP), on its own data directory, and is always
stopped by its PID: SIGTERM, then SIGKILL after a timeout. Every HTTP call and every wait is bounded.
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 30.0


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def port_open(port, timeout=0.2):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class ServerError(AssertionError):
    pass


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-cased names
        self.body = body        # bytes

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError("HTTP %d body is not JSON (%s): %r" % (self.status, e, self.body[:500]))

    def __repr__(self):
        return "<HTTP %d %s %r>" % (self.status, self.headers.get("content-type"), self.body[:300])


class Server:
    """One `factlog serve` process with a Kafka and an HTTP listener on a data directory."""

    def __init__(self, binary, root, extra_args=()):
        self.binary = binary
        self.root = root
        self.data_dir = os.path.join(root, "data")
        self.log_path = os.path.join(root, "server.log")
        self.kafka_port = free_port()
        self.http_port = free_port()
        self.bootstrap = "127.0.0.1:%d" % self.kafka_port
        self.base = "http://127.0.0.1:%d" % self.http_port
        self.extra_args = list(extra_args)
        self.proc = None
        self.starts = 0

    # --- process control -------------------------------------------------------------------------
    def argv(self):
        return [self.binary, "serve", "--data", self.data_dir,
                "--kafka-listen", self.bootstrap,
                "--http-listen", "127.0.0.1:%d" % self.http_port,
                "--log-level", "info"] + self.extra_args

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(("\n===== start #%d: %s\n" % (self.starts, " ".join(self.argv()))).encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, close_fds=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise ServerError("server exited with status %s during startup\n%s"
                                  % (rc, self.log_tail()))
            if port_open(self.http_port) and port_open(self.kafka_port):
                return
            time.sleep(0.05)
        pid = self.proc.pid
        self._kill(signal.SIGKILL, 5)
        raise ServerError("server (pid %d) did not listen on %s and :%d within %.0f s\n%s"
                          % (pid, self.bootstrap, self.http_port, START_TIMEOUT_S, self.log_tail()))

    def _kill(self, sig, timeout):
        """Sends sig to our server's PID and waits up to timeout; returns the exit status or None."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S. Raises if the shutdown was not clean."""
        if self.proc is None:
            return
        if self.proc.poll() is not None:
            rc = self.proc.returncode
            self.proc = None
            raise ServerError("server had already exited (status %s) before it was stopped\n%s"
                              % (rc, self.log_tail()))
        rc = self._kill(signal.SIGTERM, STOP_TIMEOUT_S)
        if rc is None:
            self._kill(signal.SIGKILL, 10)
            self.proc = None
            raise ServerError("server ignored SIGTERM for %.0f s; killed with SIGKILL\n%s"
                              % (STOP_TIMEOUT_S, self.log_tail()))
        self.proc = None
        if rc != 0:
            raise ServerError("server exited with status %s after SIGTERM (want 0)\n%s"
                              % (rc, self.log_tail()))

    def kill9(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerError("server had already exited (status %s) before kill -9\n%s"
                              % (self.proc.returncode, self.log_tail()))
        self._kill(signal.SIGKILL, 10)
        self.proc = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, nbytes=6000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - nbytes))
                text = f.read().decode("utf-8", "replace")
        except OSError as e:
            return "(no server log: %s)" % e
        return "----- server stderr (last %d bytes) -----\n%s" % (nbytes, text)

    # --- HTTP ------------------------------------------------------------------------------------
    def request(self, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT_S):
        """One request on a fresh connection; returns a Response (never raises on 4xx/5xx)."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            return Response(resp.status, hdrs, data)
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def create_topic(self, name, partitions=1, configs=None):
        r = self.request("POST", "/v1/topics",
                         {"name": name, "partitions": partitions, "configs": configs or {}})
        assert r.status == 201, "create topic %s: %r" % (name, r)
        return r.json()

    def topic(self, name):
        r = self.get("/v1/topics/" + urllib.parse.quote(name, safe=""))
        assert r.status == 200, "GET topic %s: %r" % (name, r)
        return r.json()

    def hwms(self, name):
        """{partition: high_watermark} from GET /v1/topics/{t}."""
        return {p["partition"]: p["high_watermark"] for p in self.topic(name)["partitions"]}

    def post_structured(self, topic, event, ctype="application/cloudevents+json"):
        return self.request("POST", "/v1/topics/%s/events" % topic, json.dumps(event).encode(),
                            {"Content-Type": ctype})

    def post_batch(self, topic, events):
        return self.request("POST", "/v1/topics/%s/events" % topic, json.dumps(events).encode(),
                            {"Content-Type": "application/cloudevents-batch+json"})

    def post_binary(self, topic, attrs, data=b"", ctype=None):
        h = {"ce-" + k: str(v) for k, v in attrs.items()}
        if ctype is not None:
            h["Content-Type"] = ctype
        return self.request("POST", "/v1/topics/%s/events" % topic, data, h)

    def read(self, topic, partition, frm=None, limit=None):
        q = {}
        if frm is not None:
            q["from"] = frm
        if limit is not None:
            q["limit"] = limit
        path = "/v1/topics/%s/partitions/%d/events" % (topic, partition)
        if q:
            path += "?" + urllib.parse.urlencode(q)
        return self.get(path)

    def read_all(self, topic, partition, frm=0, page=1000):
        """Every event from frm to the high watermark, following Factlog-Next-Offset (bounded)."""
        hwm = self.hwms(topic)[partition]
        out = []
        off = frm
        for _ in range(1000):
            if off >= hwm:
                break
            r = self.read(topic, partition, off, page)
            assert r.status == 200, "read %s/%d from %d: %r" % (topic, partition, off, r)
            evs = r.json()
            assert evs, "read %s/%d from %d below hwm %d returned no events" % (
                topic, partition, off, hwm)
            out.extend(evs)
            nxt = int(r.headers["factlog-next-offset"])
            assert nxt > off, "Factlog-Next-Offset %d did not advance from %d" % (nxt, off)
            off = nxt
        return out


def wait_until(pred, timeout, what, interval=0.05):
    """Polls pred until it returns a true value (returned), or fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)
