#!/usr/bin/env bash
# Kills `forkscope trace` with SIGKILL at a random moment, many times, and
# counts what each killed run left behind: processes of THAT run (found by
# a marker in their environment, never by name) and files in its TMPDIR
# (the probe's directory).
#
#   scripts/trace-kill9-trials.sh [TRIALS] [BINARY]   (default: 50, target/debug/forkscope)
#
# The program is tests/python/sleepers.py (forks, a Process, `sleep 60`
# from subprocess, a thread), killed 0-1.5 s after the start: before
# Python runs, while it starts its children, or once all sleep.
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-50}
bin=${2:-target/debug/forkscope}
py=$(python3 -c 'import sys; print(sys.executable)')
prog=tests/python/sleepers.py
failed=0
for i in $(seq 1 "$trials"); do
    tmp=$(mktemp -d -p /tmp forkscope-tk9-XXXXXX)
    mark="tk9-$$-$i"
    FORKSCOPE_TEST_MARK=$mark TMPDIR=$tmp "$bin" trace --python "$py" --format jsonl "$prog" >/dev/null 2>&1 &
    app=$!
    sleep "$(awk -v s="$RANDOM" 'BEGIN { printf "%.3f", (s % 1500) / 1000 }')"
    kill -9 "$app" 2>/dev/null || true
    wait "$app" 2>/dev/null || true
    left=""
    for _ in $(seq 1 100); do
        left=$(grep -lsa "FORKSCOPE_TEST_MARK=$mark" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 | tr '\n' ' ' || true)
        files=$( (find "$tmp" -mindepth 1 2>/dev/null || true) | head -1)
        [ -z "$left" ] && [ -z "$files" ] && break
        sleep 0.02
    done
    if [ -n "$left" ] || [ -n "$files" ]; then
        failed=$((failed + 1))
        echo "trial $i: left processes [$left] files [$files]"
    fi
    rm -rf "$tmp"
done
echo "$trials trials, $failed left something"
[ "$failed" = 0 ]
