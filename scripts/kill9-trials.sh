#!/usr/bin/env bash
# Kills `forkscope run` with SIGKILL at a random moment, many times, and
# counts what each killed run left behind: processes of THAT run (found by
# a marker in their environment, never by name) and files in its TMPDIR.
#
#   scripts/kill9-trials.sh [TRIALS] [BINARY]      (default: 300, target/debug/forkscope)
#
# As root it runs forkscope as nobody (setpriv --reuid=65534), the way most
# learners run it: no PID namespace there. As another user it runs as that
# user. The binary is copied to a private 0755 directory that nobody can
# read. Each trial gets its own empty TMPDIR and XDG_RUNTIME_DIR.
# AS_SELF=1 runs forkscope as the calling user even when that is root.
# A process counts as left behind if it still runs 2 s after the kill.
# Scenarios: deadlock-two-locks (the pair locks up after 0.75 s, killed
# before or after), signals (a child stopped for 5 s), the two queue
# ones, locked-counter, pool-map, no-join, daemon, zombie, and two of our
# own: a fork tree, and programs that leave the process group and session
# (`setsid`). Prints one line per failed trial and a summary; exits 1 if
# any trial left something.
# MODE=stats kills `forkscope stats SCENARIO --runs 20 --schedule free`
# instead: many runs on one shared runner (`__runner --serve`), killed in
# any of them or between two. MODE=explore kills `forkscope explore
# SCENARIO --max-schedules 500`: gated runs, two or more at a time (each
# on a shared runner of its own); its folder of schedules (made before
# the runs, its output) does not count as left behind.
set -euo pipefail
cd "$(dirname "$0")/.."

trials=${1:-300}
bin=${2:-target/debug/forkscope}
[ -x "$bin" ] || { echo "no binary at $bin (cargo build first)" >&2; exit 2; }

# Under /tmp, not $TMPDIR: that may be a private (0700) directory nobody
# could reach.
work=$(mktemp -d -p /tmp forkscope-kill9-XXXXXX)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
cp "$bin" "$work/forkscope"
chmod 755 "$work/forkscope"

as_user=()
if [ "$(id -u)" = 0 ] && [ "${AS_SELF:-0}" != 1 ]; then
    if command -v setpriv >/dev/null; then
        as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
        who=nobody
    else
        echo "root but no setpriv: running as root (PID namespace available)" >&2
        who=root
    fi
else
    who=$(id -un)
fi

cat >"$work/fork-tree.toml" <<'EOF'
name = "fork-tree"
title = "a tree of forks that sleeps"
explain = "16 processes."
source = "for i in range(4): os.fork()"
[roles.main]
steps = [ { repeat = "4", steps = [ { fork = "" } ] }, { sleep_ms = 20000 } ]
EOF
cat >"$work/leave-group.toml" <<'EOF'
name = "leave-group"
title = "programs that leave the process group and the session"
explain = "setsid, and a shell that backgrounds a setsid'd child."
source = "subprocess.call(['setsid', 'sleep', '30'])"
[roles.main]
steps = [
  { spawn = "away", as = "a" },
  { exec = ["sh", "-c", "setsid sleep 30 & exec sleep 30"], capture = false },
  { join = "a" },
]
[roles.away]
steps = [ { exec = ["setsid", "sleep", "30"], capture = false } ]
EOF
chmod 644 "$work"/*.toml

scenarios=(
    "deadlock-two-locks --set hold_ms=1500"
    "signals --set stop_ms=10000"
    "queue-bounded"
    "queue-producer-consumer"
    "locked-counter --set workers=4"
    "pool-map"
    "no-join"
    "daemon"
    "zombie"
    "$work/fork-tree.toml"
    "$work/leave-group.toml --allow-exec"
)

# Pids of live (non-zombie) processes whose environment holds the marker
# (a zombie's environ reads empty).
marked() {
    local f
    for f in $(grep -lsxzF "FORKSCOPE_TRIAL=$1" /proc/[0-9]*/environ || true); do
        f=${f#/proc/}
        echo "${f%/environ}"
    done
}

case "${MODE:-run}" in
    run) command=(run) ;;
    stats) command=(stats --runs 20 --schedule free) ;;
    explore) command=(explore --max-schedules 500) ;;
    *) echo "MODE must be run, stats or explore" >&2; exit 2 ;;
esac

left_procs=0
left_files=0
for ((i = 1; i <= trials; i++)); do
    scen=${scenarios[$(( (i - 1) % ${#scenarios[@]} ))]}
    marker="k9-$$-$i"
    tmp=$(mktemp -d -p /tmp forkscope-kill9-run-XXXXXX)
    chmod 1777 "$tmp"
    # A random moment: from before the runner is up to well into the run.
    delay_ms=$(( RANDOM % 1500 ))
    # shellcheck disable=SC2086 # $scen holds a name and its --set words
    "${as_user[@]}" env FORKSCOPE_TRIAL="$marker" TMPDIR="$tmp" XDG_RUNTIME_DIR="$tmp" \
        "$work/forkscope" "${command[@]}" $scen --time-scale 0.5 --format jsonl >/dev/null 2>&1 </dev/null &
    app=$!
    sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
    kill -9 "$app" 2>/dev/null || true
    wait "$app" 2>/dev/null || true
    # Cleanup may take a moment (the watchdog reads EOF, kills, reaps).
    left=""
    for _ in $(seq 40); do
        left=$(marked "$marker")
        [ -z "$left" ] && break
        sleep 0.05
    done
    if [ -n "$left" ]; then
        left_procs=$((left_procs + 1))
        echo "trial $i ($scen, kill after ${delay_ms} ms): left $(echo "$left" | wc -w) processes:"
        for p in $left; do
            echo "    $(ps -o pid=,stat=,wchan:16=,args= -p "$p" 2>/dev/null || true)"
        done
        for p in $left; do kill -9 "$p" 2>/dev/null || true; done
    fi
    files=$(find "$tmp" -mindepth 1 -not -path "$tmp/forkscope-explore-*" 2>/dev/null | wc -l)
    if [ "$files" -gt 0 ]; then
        left_files=$((left_files + 1))
        echo "trial $i ($scen, kill after ${delay_ms} ms): left $files files in TMPDIR: $(ls -A "$tmp" | head -3 | tr '\n' ' ')"
    fi
    rm -rf "$tmp"
done

echo "kill -9 trials (${MODE:-run}) as $who: $trials; trials that left processes: $left_procs; trials that left files: $left_files"
[ "$left_procs" = 0 ] && [ "$left_files" = 0 ]
