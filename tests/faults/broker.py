"""Starting and stopping a factlog broker for the fault tests: a free loopback port, a temp data dir,
waits bounded in time, and every process stopped by its PID."""
import os
import signal
import socket
import subprocess
import tempfile
import time

BIN = os.environ["FACTLOG_BIN"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Broker:
    """factlog serve on 127.0.0.1:port with its data in root/data and its log in root/server.log."""

    def __init__(self, *extra, env=None, root=None, port=None):
        self.root = root or tempfile.mkdtemp(prefix="factlog-fault-")
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "server.log")
        self.port = port or free_port()
        self.bootstrap = "127.0.0.1:%d" % self.port
        self.extra = list(extra)
        self.proc = None
        self.start(env)

    def start(self, env=None):
        self.proc = subprocess.Popen([BIN, "serve", "--data", self.data, "--kafka-listen", self.bootstrap,
                                      "--http-listen", "127.0.0.1:0", "--auto-create-topics",
                                      "--log-level", "info"] + self.extra,
                                     stderr=open(self.log, "ab"), env=env)
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                assert self.proc.poll() is None, "the server exited:\n" + self.log_tail()
                time.sleep(0.02)
        raise AssertionError("the server did not start:\n" + self.log_tail())

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def remove(self):
        self.stop()
        subprocess.run(["rm", "-rf", self.root])

    def log_tail(self, n=3000):
        try:
            return open(self.log).read()[-n:]
        except OSError:
            return ""

    def rss_mb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0
