#!/bin/bash
# Counts runs that lose an event at the start or end of a run (h-flake).
#   scripts/flake-trials.sh BIN N [WRAPPER...]     e.g. ... 500 taskset -c 1
# Three checks per trial:
#   spawn:  benches/spawn.toml children=0: 1 spawn, 2 hellos, 1 reaped
#   stdio:  fork-stdio-buffer pause_ms=0: main's own output holds "main pid"
#   pipe:   subprocess-pipe: 4 hellos (runner, main and its two programs)
# and no run may say on stderr that the collector refused a connection.
# All three lost a hello under load until a peer read by /proc while it
# was being reaped was no longer taken for a stranger (RELIABILITY.md,
# reaped-peer): run two of these beside `cargo test` to load the machine.
# A failing run's stdout and stderr are kept in $TMPDIR/flake-trials.PID.*
BIN=$1; N=$2; shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
keep=${TMPDIR:-/tmp}/flake-trials.$$
fail_spawn=0; fail_stdio=0; fail_pipe=0; refused=0
for i in $(seq "$N"); do
  out=$("$@" "$BIN" run "$here/benches/spawn.toml" --max-procs 1024 --set children=0 --format jsonl 2>"$keep.err")
  h=$(grep -c '"kind":"hello"' <<<"$out"); s=$(grep -c '"kind":"spawn"' <<<"$out"); r=$(grep -c '"kind":"reaped"' <<<"$out")
  if [ "$h" != 2 ] || [ "$s" != 1 ] || [ "$r" != 1 ]; then
    fail_spawn=$((fail_spawn+1)); echo "spawn run $i: $s spawns $h hellos $r reaps"
    echo "$out" > "$keep.spawn.$i"; cp "$keep.err" "$keep.spawn.$i.err"
  fi
  grep -q refused "$keep.err" && { refused=$((refused+1)); cp "$keep.err" "$keep.refused.$i.spawn"; }
  out=$("$@" "$BIN" run fork-stdio-buffer --set pause_ms=0 --format jsonl 2>"$keep.err")
  m=$(grep '"proc":"main",' <<<"$out" | grep '"kind":"output"' | grep -c 'main pid')
  if [ "$m" != 1 ]; then
    fail_stdio=$((fail_stdio+1)); echo "stdio run $i: main's own output has $m 'main pid' lines"
    echo "$out" > "$keep.stdio.$i"; cp "$keep.err" "$keep.stdio.$i.err"
  fi
  grep -q refused "$keep.err" && { refused=$((refused+1)); cp "$keep.err" "$keep.refused.$i.stdio"; }
  out=$("$@" "$BIN" run subprocess-pipe --format jsonl 2>"$keep.err")
  h=$(grep -c '"kind":"hello"' <<<"$out")
  if [ "$h" != 4 ]; then
    fail_pipe=$((fail_pipe+1)); echo "pipe run $i: $h hellos"
    echo "$out" > "$keep.pipe.$i"; cp "$keep.err" "$keep.pipe.$i.err"
  fi
  grep -q refused "$keep.err" && { refused=$((refused+1)); cp "$keep.err" "$keep.refused.$i.pipe"; }
done
rm -f "$keep.err"
echo "$BIN: spawn $fail_spawn / $N failed, stdio $fail_stdio / $N failed, pipe $fail_pipe / $N failed, $refused runs refused a connection"
