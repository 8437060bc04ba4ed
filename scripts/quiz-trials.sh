#!/usr/bin/env bash
# N trials of `forkscope quiz` for every built-in that asks a question,
# with no answer on stdin: prints the distinct answers each run gave.
#   scripts/quiz-trials.sh [BINARY] [N] [TIME_SCALE]
set -u
bin=${1:-target/debug/forkscope}; n=${2:-10}; scale=${3:-1}
for s in $($bin list | awk '{print $1}'); do
  out=$(echo "" | timeout 60 $bin quiz $s --time-scale $scale 2>/dev/null) || { rc=$?; [ $rc = 2 ] && continue; echo "$s: rc=$rc"; continue; }
  answers="$(grep -m1 '^  answer: ' <<<"$out")"
  declare -A seen=(); seen["$answers"]=1; fails=0
  for i in $(seq 2 $n); do
    out=$(echo "" | timeout 60 $bin quiz $s --time-scale $scale 2>/dev/null) || fails=$((fails+1))
    a="$(grep -m1 '^  answer: ' <<<"$out")"
    seen["$a"]=$(( ${seen["$a"]:-0} + 1 ))
  done
  printf '%s (%d runs, %d failed):' "$s" "$n" "$fails"
  for k in "${!seen[@]}"; do printf ' [%s ×%s]' "${k#  answer: }" "${seen[$k]}"; done; echo
  unset seen
done
