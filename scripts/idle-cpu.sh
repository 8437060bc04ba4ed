#!/usr/bin/env bash
# CPU use of the real forkscope window when nothing moves, under a virtual
# X server with software GL (see scripts/screenshot.sh):
#
#   1. the window just opened, nothing run yet;
#   2. after a run has finished (R is pressed in the window, the run ends,
#      its last animations fade).
#
# Each is measured over SECS seconds (default 10) from /proc/PID/stat
# (utime + stime of every thread of the app) and printed as % of one core.
# The target (docs/PERFORMANCE.md) is under 2 %.
#
#   scripts/idle-cpu.sh [SCENARIO] [SECS]        default: locked-counter 10
#
# FORKSCOPE=path/to/binary picks the binary (default: cargo build --release).
set -euo pipefail

scenario=${1:-locked-counter}
secs=${2:-10}

. "$(dirname "$0")/xvfb-packages.sh"
need_xvfb_packages xdotool=xdotool

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${FORKSCOPE:-}
if [ -z "$bin" ]; then
    (cd "$root" && cargo build --release --quiet)
    bin=${CARGO_TARGET_DIR:-$root/target}/release/forkscope
fi

runtime=$(mktemp -d)
chmod 700 "$runtime"
app_pid=""
cleanup() {
    if [ -n "$app_pid" ] && kill -0 "$app_pid" 2>/dev/null; then
        kill "$app_pid" 2>/dev/null || true
        wait 2>/dev/null || true
    fi
    rm -rf "$runtime"
}
trap cleanup EXIT

# The app runs under xvfb-run through a small shell that first writes down
# its pid (it then execs the app) and the display it got.
env -u WAYLAND_DISPLAY XDG_RUNTIME_DIR="$runtime" LIBGL_ALWAYS_SOFTWARE=1 \
    xvfb-run -a -s "-screen 0 1920x1200x24" \
    sh -c 'echo "$$ $DISPLAY ${XAUTHORITY:-}" > "$0/app"; exec "$@"' "$runtime" \
    "$bin" --scenario "$scenario" --size 1280x800 >"$runtime/log" 2>&1 &

for _ in $(seq 100); do
    [ -s "$runtime/app" ] && break
    sleep 0.1
done
[ -s "$runtime/app" ] || { echo "the app did not start" >&2; exit 1; }
read -r app_pid display xauth < "$runtime/app"

# utime + stime (fields 14 and 15, after the parenthesised name) in ticks.
ticks() {
    sed 's/^.*) //' "/proc/$app_pid/stat" | awk '{ print $12 + $13 }'
}
hz=$(getconf CLK_TCK)

# Percent of one core over $secs seconds.
measure() {
    local t0 t1 s0 s1
    t0=$(ticks)
    s0=$(date +%s.%N)
    sleep "$secs"
    t1=$(ticks)
    s1=$(date +%s.%N)
    awk -v d="$((t1 - t0))" -v hz="$hz" -v s0="$s0" -v s1="$s1" \
        'BEGIN { printf "%.2f", d / hz * 100 / (s1 - s0) }'
}

alive() {
    kill -0 "$app_pid" 2>/dev/null || { echo "the app exited:" >&2; cat "$runtime/log" >&2; exit 1; }
}

# Let the window open and settle.
sleep 3
alive
idle=$(measure)
alive
echo "idle, nothing run yet: $idle % of one core over $secs s"

# R in the window: (re)start the run.
export DISPLAY=$display
[ -n "$xauth" ] && export XAUTHORITY=$xauth
wid=$(xdotool search --sync --name '^forkscope$' | head -1)
xdotool windowfocus --sync "$wid" 2>/dev/null || true
xdotool key --clearmodifiers r
# The run is going while the app has a child (the runner).
for _ in $(seq 50); do
    pgrep -P "$app_pid" >/dev/null && break
    sleep 0.1
done
pgrep -P "$app_pid" >/dev/null || { echo "pressing R did not start a run" >&2; exit 1; }
started=$(date +%s)
while pgrep -P "$app_pid" >/dev/null; do
    [ $(($(date +%s) - started)) -lt 120 ] || { echo "the run did not end within 120 s" >&2; exit 1; }
    sleep 0.2
done
echo "the $scenario run took about $(($(date +%s) - started)) s"
# Animations end 1 s after the last event.
sleep 2
alive
after=$(measure)
alive
echo "idle, after a run finished: $after % of one core over $secs s"
