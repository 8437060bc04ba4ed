# Sourced by the scripts that run the app under Xvfb: installs, with
# apt-get, what a machine without a display needs for that (the X server,
# software GL, xkbcommon) plus any extra commands named as arguments.
#
#   . scripts/xvfb-packages.sh [COMMAND=PACKAGE ...]   e.g. xdotool=xdotool
need_xvfb_packages() {
    local need=() pair
    command -v xvfb-run >/dev/null 2>&1 || need+=(xvfb xauth)
    for pair in "$@"; do
        command -v "${pair%%=*}" >/dev/null 2>&1 || need+=("${pair#*=}")
    done
    [ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so ] || [ -e /usr/lib/x86_64-linux-gnu/dri/llvmpipe_dri.so ] \
        || need+=(libgl1-mesa-dri)
    # Read the cache into a variable first: `ldconfig -p | grep -q` fails at
    # random under pipefail (grep exits early, ldconfig dies of SIGPIPE).
    local libs
    libs=$(ldconfig -p 2>/dev/null || true)
    case "$libs" in
        *libxkbcommon-x11.so*) ;;
        *) need+=(libxkbcommon-x11-0) ;;
    esac
    if [ ${#need[@]} -gt 0 ]; then
        echo "installing ${need[*]}…" >&2
        apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null
    fi
}
