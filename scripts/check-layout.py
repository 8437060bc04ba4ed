#!/usr/bin/env python3
"""Checks a stage layout that `forkscope --screenshot X.png --dump-layout X.json`
wrote: the same checks as tests/layout.rs, on what the real window drew.

    scripts/check-layout.py [--min-key-px N] A.json [B.json ...]

- no two top-level items overlap (edges and dots excepted; a pool's frame
  may hold its workers); no dot covers a label;
- every item is inside the stage (and so inside the window); the
  toolbar's widgets (kind button, status, tool_label) inside the window, none over
  another;
- with --min-key-px, every key label is at least that many pixels.

Prints one line per file (smallest key label, number of problems) and the
problems; exits 1 if there are any. Standard library only.
"""
import json
import sys


def inside(outer, inner, slack=1.0):
    return (inner[0] >= outer[0] - slack and inner[1] >= outer[1] - slack
            and inner[2] <= outer[2] + slack and inner[3] <= outer[3] + slack)


def overlap(a, b):
    return a[0] < b[2] - 1 and b[0] < a[2] - 1 and a[1] < b[3] - 1 and b[1] < a[3] - 1


# Kinds of the toolbar's widgets (ids "toolbar.…").
CHROME = ("button", "status", "tool_label")


def problems(dump, min_key_px):
    found = []
    stage = dump["stage"]
    w, h = dump["window"]
    items = dump["items"]
    for it in items:
        # The toolbar's widgets are outside the stage, inside the window.
        room = [0, 0, w, h] if it["kind"] in CHROME else stage
        if not inside(room, it["rect"]):
            found.append(f"{it['id']} ({it['kind']}) off the stage: {it['rect']}")
        if it.get("cut"):
            found.append(f"{it['id']} is cut short")
        font = it.get("font_px")
        if min_key_px and it.get("key") and font is not None and font + 0.05 < min_key_px:
            found.append(f"{it['id']} is {font} px (< {min_key_px})")
    solid = [i for i in items
             if i.get("parent") is None and i["kind"] not in ("edge", "dot")]
    for n, a in enumerate(solid):
        for b in solid[n + 1:]:
            holds = lambda p, x: (p["kind"] == "pool" and x["kind"] != "pool"
                                  and inside(p["rect"], x["rect"]))
            if holds(a, b) or holds(b, a):
                continue
            if overlap(a["rect"], b["rect"]):
                found.append(f"{a['id']} overlaps {b['id']}")
    labels = [i for i in items if i["kind"] == "label"]
    for d in (i for i in items if i["kind"] == "dot"):
        for lab in labels:
            if overlap(d["rect"], lab["rect"]):
                found.append(f"{d['id']} covers {lab['id']}")
    return found


def main(args):
    min_key_px = None
    if args[:1] == ["--min-key-px"]:
        min_key_px = float(args[1])
        args = args[2:]
    if not args:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    bad = 0
    for path in args:
        with open(path, encoding="utf-8") as f:
            dump = json.load(f)
        keys = [i["font_px"] for i in dump["items"] if i.get("key") and "font_px" in i]
        smallest = min(keys) if keys else float("nan")
        found = problems(dump, min_key_px)
        print(f"{path}: window {dump['window'][0]:.0f}x{dump['window'][1]:.0f}, "
              f"{len(dump['items'])} items, smallest key label {smallest:.1f} px, "
              f"{len(found)} problems")
        for p in found[:10]:
            print(f"    {p}")
        bad += bool(found)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
