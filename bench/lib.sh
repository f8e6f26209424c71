# Shared by the bench scripts (bash): sourced, not run.
# free_ports N: prints N free loopback TCP ports, separated by spaces.
free_ports() {
	/usr/bin/python3 -c 'import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
[s.bind(("127.0.0.1", 0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}
# stop_pid PID: SIGTERM, up to 15 s to exit, then SIGKILL; reaps it. Never fails.
stop_pid() {
	[ -n "$1" ] || return 0
	kill -TERM "$1" 2>/dev/null || true
	for _ in $(seq 150); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
