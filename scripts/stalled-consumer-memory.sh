#!/usr/bin/env bash
# Peak memory of `forkscope run` while its consumer is stalled: workers
# write ~3 KB values as fast as they can (tests/fixtures/long-values.toml)
# while nothing reads forkscope's stdout for STALL seconds; prints the
# peak RSS (VmHWM, sampled every 0.2 s) and how many writes came out.
#
#   scripts/stalled-consumer-memory.sh BIN [BIN ...]   (WORKERS=20, STALL=6)
#
# docs/reliability/memory-bound.md.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
scenario=$here/tests/fixtures/long-values.toml
workers=${WORKERS:-20}
stall=${STALL:-6}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for bin in "$@"; do
    ( "$bin" run "$scenario" --set "workers=$workers" --max-procs 1024 --format jsonl 2>"$out/err" \
        | (sleep "$stall"; grep -c '"kind":"write"') >"$out/count" ) &
    pid=""
    for _ in $(seq 50); do
        pid=$(pgrep -n -f -- "$bin run $scenario" || true)
        [ -n "$pid" ] && break
        sleep 0.1
    done
    peak=0
    while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do
        h=$(awk '/VmHWM/{print $2}' "/proc/$pid/status" 2>/dev/null || true)
        [ -n "$h" ] && peak=$h
        sleep 0.2
    done
    wait
    echo "$bin: peak RSS $((peak / 1024)) MB; writes $(cat "$out/count") of $((workers * 3000)); stderr: $(head -c 200 "$out/err")"
done
