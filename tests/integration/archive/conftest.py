"""Fixtures for the archive (tiered storage) tests: a `factlog serve` whose archive is a directory or an
s3rver (npm) on a free loopback port. Every process is stopped by its PID; every wait is bounded."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (HERE, os.path.join(HERE, "..", "lib")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from flserver import Server, free_port, port_open, wait_until  # noqa: E402,F401


def factlog_bin():
    b = os.environ.get("FACTLOG_BIN")
    if not b or not os.access(b, os.X_OK):
        pytest.fail("FACTLOG_BIN is not set to an executable: run tests/integration/archive/run.sh",
                    pytrace=False)
    return os.path.abspath(b)


class S3:
    """s3rver with a bucket `archive`, credentials S3RVER/S3RVER, path-style URLs."""

    def __init__(self, root):
        exe = os.environ.get("S3RVER")
        if not exe or not os.access(exe, os.X_OK):
            pytest.fail("S3RVER is not set to the s3rver executable (run.sh installs it)", pytrace=False)
        self.dir = os.path.join(root, "s3")
        os.makedirs(self.dir)
        self.port = free_port()
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.log = open(os.path.join(root, "s3rver.log"), "wb")
        self.proc = subprocess.Popen([exe, "-d", self.dir, "-a", "127.0.0.1", "-p", str(self.port), "--silent",
                                      "--configure-bucket", "archive"], stdout=self.log, stderr=self.log)
        wait_until(lambda: port_open(self.port), 30, "s3rver on port %d" % self.port)

    def objects(self):
        """Object keys stored (s3rver keeps each object under DIR/BUCKET/KEY._S3rver_object)."""
        out = []
        base = os.path.join(self.dir, "archive")
        for d, _, files in os.walk(base):
            for f in files:
                if f.endswith("._S3rver_object"):
                    out.append(os.path.relpath(os.path.join(d, f), base)[:-len("._S3rver_object")])
        return sorted(out)

    def start(self):
        """Starts it again (after stop) on the same port and directory."""
        self.log = open(self.log.name, "ab")
        self.proc = subprocess.Popen([os.environ["S3RVER"], "-d", self.dir, "-a", "127.0.0.1", "-p",
                                      str(self.port), "--silent", "--configure-bucket", "archive"],
                                     stdout=self.log, stderr=self.log)
        wait_until(lambda: port_open(self.port), 30, "s3rver on port %d" % self.port)

    def stop(self):
        if self.log.closed:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


class SlowProxy:
    """A TCP proxy in front of s3rver that, while `delay` is set, holds each GET request that starts a read
    from the client for that many seconds before passing it on (a slow object store), and while `fail` is
    set answers such GETs with a 500 itself (counted in `failed`). `max_held` is the most GETs it held at
    once. Bytes pass unchanged, so SigV4 signatures stay valid. Threads end with their sockets; close()
    stops accepting."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.delay = 0.0
        self.delayed = 0
        self.held = 0
        self.max_held = 0
        self.lock = threading.Lock()
        self.fail = False
        self.failed = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.endpoint = "http://127.0.0.1:%d" % self.port
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.upstream), timeout=30)
            self.conns += [c, u]
            threading.Thread(target=self._pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False), daemon=True).start()

    def _pump(self, src, dst, from_client):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                get = from_client and data.startswith(b"GET /") and b"list-type" not in data[:200]
                if get and self.fail:
                    self.failed += 1
                    body = b"<Error><Code>InternalError</Code></Error>"
                    src.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                    continue
                if get and self.delay > 0:
                    with self.lock:
                        self.delayed += 1
                        self.held += 1
                        self.max_held = max(self.max_held, self.held)
                    try:
                        time.sleep(self.delay)
                    finally:
                        with self.lock:
                            self.held -= 1
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()
        for s in self.conns:
            try:
                s.close()
            except OSError:
                pass


def _server(request, monkeypatch, kind, extra=()):
    """A server with a small segment size, fast retention and archiving, and an archive of either kind
    (s3-slow: s3rver behind a SlowProxy, as srv.proxy)."""
    root = tempfile.mkdtemp(prefix="factlog-archive-")
    s3 = None
    proxy = None
    args = ["--retention-check-ms", "200", "--archive-check-ms", "200"] + list(extra)
    if kind in ("s3", "s3-slow"):
        s3 = S3(root)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "S3RVER")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "S3RVER")
        endpoint = s3.endpoint
        if kind == "s3-slow":
            proxy = SlowProxy(s3.port)
            endpoint = proxy.endpoint
        args += ["--archive", "s3://archive/factlog", "--s3-endpoint", endpoint]
    else:
        args += ["--archive", os.path.join(root, "archive")]
    srv = Server(factlog_bin(), root, args)
    srv.kind = kind
    srv.s3 = s3
    srv.proxy = proxy
    srv.archive_dir = os.path.join(root, "archive")
    srv.start()
    try:
        yield srv
    finally:
        try:
            if srv.proc is not None:
                srv.stop()
        finally:
            if proxy is not None:
                proxy.close()
            if s3 is not None:
                s3.stop()
            rep = getattr(request.node, "rep_call", None)
            if rep is not None and rep.passed:
                shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["dir", "s3"])
def archived_server(request, monkeypatch):
    yield from _server(request, monkeypatch, request.param)


CACHE_BYTES = 200000


@pytest.fixture
def s3_small_cache_server(request, monkeypatch):
    """An S3 archive whose download cache may hold CACHE_BYTES."""
    yield from _server(request, monkeypatch, "s3", ["--archive-cache-bytes", str(CACHE_BYTES)])


@pytest.fixture
def slow_s3_server(request, monkeypatch):
    """An S3 archive behind a proxy that can hold downloads (srv.proxy.delay), with one Kafka event loop, so
    that every connection shares the loop a download could stall."""
    yield from _server(request, monkeypatch, "s3-slow", ["--kafka-threads", "1"])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
