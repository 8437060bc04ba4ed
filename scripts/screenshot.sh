#!/usr/bin/env bash
# Takes a screenshot of the forkscope window mid-run, under a virtual X
# server, so it works on a machine without a display.
#
#   scripts/screenshot.sh NAME|PROGRAM.py OUT.png [extra forkscope args...]
#   e.g. scripts/screenshot.sh locked-counter docs/img/locked-counter.png --presenter --after-ms 900
#
# Extra args go to forkscope (--set k=v, --time-scale F, --presenter,
# --size WxH, --after-ms N). FORKSCOPE=path/to/binary picks the binary
# (default: build it with cargo).
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 NAME OUT.png [extra forkscope args...]" >&2
    exit 2
fi
name=$1
out=$2
shift 2

. "$(dirname "$0")/xvfb-packages.sh"
need_xvfb_packages

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${FORKSCOPE:-}
if [ -z "$bin" ]; then
    (cd "$root" && cargo build --quiet)
    bin=${CARGO_TARGET_DIR:-$root/target}/debug/forkscope
fi

# 1280x800 unless the caller picks a size (--size WxH, e.g. with --presenter).
size_args=(--size 1280x800)
for a in "$@"; do
    case $a in --size | --size=*) size_args=() ;; esac
done

# NAME is a scenario (a built-in or a .toml), or a Python program (.py,
# traced as `forkscope --trace` does).
case $name in
*.py) target=(--trace "$name") ;;
*) target=(--scenario "$name") ;;
esac

runtime=$(mktemp -d)
chmod 700 "$runtime"
trap 'rm -rf "$runtime"' EXIT

# X11 and software GL only: no Wayland, no GPU needed.
env -u WAYLAND_DISPLAY XDG_RUNTIME_DIR="$runtime" LIBGL_ALWAYS_SOFTWARE=1 \
    xvfb-run -a -s "-screen 0 1920x1200x24" \
    "$bin" "${target[@]}" "${size_args[@]}" --screenshot "$out" "$@"
echo "saved $out" >&2
