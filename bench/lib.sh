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
# need FILE...: exits unless each is an executable (the scripts build nothing).
need() {
	for f in "$@"; do
		[ -x "$f" ] || { echo "missing $f: build first" >&2; exit 1; }
	done
}
# scratch NAME VAR...: sets S to a new directory $BENCH_DIR/NAME.XXXXXX (absolute). On exit the processes
# whose PIDs the variables VAR... hold then are stopped (stop_pid), and S is removed unless KEEP is set.
scratch() {
	mkdir -p "$BENCH_DIR"
	S=$(cd "$(mktemp -d "$BENCH_DIR/$1.XXXXXX")" && pwd)
	shift
	SCRATCH_PIDS="$*"
	trap '_scratch_cleanup' EXIT
	trap 'exit 130' INT TERM
}
_scratch_cleanup() {
	for v in $SCRATCH_PIDS; do stop_pid "${!v:-}"; done
	[ -n "${KEEP:-}" ] || rm -rf "$S"
}
# cpu_ticks PID: prints two numbers, the CPU time (user + system, clock ticks) used so far by PID itself and by
# its live descendants together (a function's handler processes): for costs per event that do not move with load.
cpu_ticks() {
	awk -v pid="$1" '{ p = FILENAME; sub(/^\/proc\//, "", p); sub(/\/stat$/, "", p)
		sub(/^.*\) /, ""); parent[p] = $2; t[p] = $12 + $13 } # after "(comm) ": $2 ppid, $12 utime, $13 stime
		END { for (q in t) { a = q; for (d = 0; d < 8 && a != pid && a in parent; d++) a = parent[a]
			if (q == pid) self = t[q]; else if (a == pid) kids += t[q] }
		      print self + 0, kids + 0 }' /proc/[0-9]*/stat 2>/dev/null
}
