#!/usr/bin/env bash
# Runs one libFuzzer target for FUZZ_SECONDS (default 10) over its committed seed corpus; new inputs go
# to a scratch directory in the build tree, so the committed corpus is not modified.
set -euo pipefail
exe=$1 seeds=$2 out=$3
mkdir -p "$out"
# -error_exitcode=1: libFuzzer's default (77) is Meson's "skipped", which would hide a crash.
# UBSan reports only print by default: make them crashes, so undefined behaviour fails the run.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
exec "$exe" -max_total_time="${FUZZ_SECONDS:-10}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	-error_exitcode=1 -timeout_exitcode=1 \
	"$out" "$seeds"
