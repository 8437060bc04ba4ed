#!/bin/bash
# Counts runs that lose an event at the start or end of a run (h-flake).
#   scripts/flake-trials.sh BIN N [WRAPPER...]     e.g. ... 500 taskset -c 1
# Two checks per trial:
#   spawn:  benches/spawn.toml children=0: 1 spawn, 2 hellos, 1 reaped
#   stdio:  fork-stdio-buffer pause_ms=0: main's own output holds "main pid"
# A failing run's stdout and stderr are kept in $TMPDIR/flake-trials.PID.*
BIN=$1; N=$2; shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
keep=${TMPDIR:-/tmp}/flake-trials.$$
fail_spawn=0; fail_stdio=0
for i in $(seq "$N"); do
  out=$("$@" "$BIN" run "$here/benches/spawn.toml" --max-procs 1024 --set children=0 --format jsonl 2>"$keep.err")
  h=$(grep -c '"kind":"hello"' <<<"$out"); s=$(grep -c '"kind":"spawn"' <<<"$out"); r=$(grep -c '"kind":"reaped"' <<<"$out")
  if [ "$h" != 2 ] || [ "$s" != 1 ] || [ "$r" != 1 ]; then
    fail_spawn=$((fail_spawn+1)); echo "spawn run $i: $s spawns $h hellos $r reaps"
    echo "$out" > "$keep.spawn.$i"; cp "$keep.err" "$keep.spawn.$i.err"
  fi
  out=$("$@" "$BIN" run fork-stdio-buffer --set pause_ms=0 --format jsonl 2>"$keep.err")
  m=$(grep '"proc":"main",' <<<"$out" | grep '"kind":"output"' | grep -c 'main pid')
  if [ "$m" != 1 ]; then
    fail_stdio=$((fail_stdio+1)); echo "stdio run $i: main's own output has $m 'main pid' lines"
    echo "$out" > "$keep.stdio.$i"; cp "$keep.err" "$keep.stdio.$i.err"
  fi
done
rm -f "$keep.err"
echo "$BIN: spawn $fail_spawn / $N failed, stdio $fail_stdio / $N failed"
