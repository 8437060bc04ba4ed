#!/usr/bin/env python3
"""Issue 9's experiment, repeatable: mutate the built-in scenarios into
thousands of hostile files, run the real binary on each, and count what
must never happen: exit code 101 (a panic), death by a signal (an abort,
a stack overflow) and hangs (no answer within the time limit).

    scripts/hostile-mutations.py [--bin target/debug/forkscope] [--files 9000]
                                 [--seed 9] [--run 300] [--limit-s 2]

`check` runs on every file; `--run N` also runs the first N files that
pass `check` (with --time-scale 0.02 --timeout 1, allowed --limit-s + 2 s),
and counts there too the scenario processes that panicked ("panicked at"
on stderr). Exit status 1 when anything of the kind was seen.
"""

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HOSTILE_NUMBERS = [
    "1e300", "-1e300", "inf", "-inf", "nan", "-1", "-0.0", "0",
    "9223372036854775807", "-9223372036854775808", "4294967296",
    "100000", "99999999999999999999", "1e-300", "2.5",
]
HOSTILE_EXPRS = [
    "é", "{é}", "naïve", "€", "1 + é", "Å", "\\u00e9", "日本",
    "(2**63) // -1", "(2**63) % -1", "-(2**63)", "2**64", "3 ** 99999999999",
    "9223372036854775807 + 1", "abs(-9223372036854775807 - 1)",
    "int(1e300)", "int(float('nan'))", "round(1e19)", "float('inf')",
    "1e300", "-5", "1/0", "1//0", "1%0", "'x' * 10000", "range(100001)",
    "randint(-9223372036854775807, 9223372036854775807)",
    "random() * 1e300", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    "{x:>70000}", "{x:.70000f}", "{1:99999999999999999999}",
]


def deep(rng):
    n = rng.choice([100, 1000, 6000, 20000])
    kind = rng.randrange(5)
    if kind == 0:
        return "(" * n + "1" + ")" * n
    if kind == 1:
        return "-" * n + "1"
    if kind == 2:
        return "not " * n + "1"
    if kind == 3:
        return "1" + " + 1" * n
    return "[" * n + "1" + "]" * n


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mutate(text, rng):
    """One to three random mutations of a scenario's TOML text."""
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(12)
        lines = text.split("\n")
        if kind == 0 and text:  # delete a few characters
            i = rng.randrange(len(text))
            text = text[:i] + text[i + rng.randint(1, 4):]
        elif kind == 1:  # insert a character, often a non-ASCII one
            i = rng.randrange(len(text) + 1)
            c = rng.choice("é€日Å\u00a0\u0085[]{}()\"'#=,.0123456789-+*/%<>_\\\n")
            text = text[:i] + c + text[i:]
        elif kind == 2:  # a number literal becomes a hostile one
            nums = list(re.finditer(r"(?<![\w.])-?\d+(\.\d+)?(?![\w.])", text))
            if nums:
                m = rng.choice(nums)
                text = text[: m.start()] + rng.choice(HOSTILE_NUMBERS) + text[m.end():]
        elif kind == 3:  # a string value becomes a hostile expression
            strs = list(re.finditer(r'= "([^"\\\n]*)"', text))
            if strs:
                m = rng.choice(strs)
                e = rng.choice(HOSTILE_EXPRS)
                if rng.random() < 0.3:
                    e = "{" + e + "}"
                text = text[: m.start(1) - 1] + quote(e) + text[m.end(1) + 1:]
        elif kind == 4:  # a string value becomes a deeply nested expression
            strs = list(re.finditer(r'= "([^"\\\n]*)"', text))
            if strs:
                m = rng.choice(strs)
                e = deep(rng)
                if rng.random() < 0.3:
                    e = "{" + e + "}"
                text = text[: m.start(1) - 1] + quote(e) + text[m.end(1) + 1:]
        elif kind == 5:  # wrap a step in nested repeats
            steps = list(re.finditer(r"\{ (spawn|fork|print|sleep_ms|add) [^\n]*\}", text))
            if steps:
                m = rng.choice(steps)
                n = rng.choice([2, 3, 5, 40, 1000])
                count = rng.choice(["100000", "1000", "2", "99999"])
                inner = m.group(0).rstrip(",")
                wrapped = ("{ repeat = %s, steps = [ " % count) * n + inner + " ] }" * n
                text = text[: m.start()] + wrapped + text[m.start() + len(inner):]
        elif kind == 6:  # a sleep with a hostile value
            steps = list(re.finditer(r"\{ print = [^\n]*\}", text))
            if steps:
                m = rng.choice(steps)
                v = rng.choice(HOSTILE_NUMBERS + [quote(e) for e in HOSTILE_EXPRS[:12]])
                key = rng.choice(["sleep_ms", "sleep_ms", "exit", "repeat"])
                extra = ", steps = []" if key == "repeat" else ""
                text = text[: m.start()] + "{ %s = %s%s }" % (key, v, extra) + text[m.end():]
        elif kind == 7 and len(lines) > 1:  # duplicate a line
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i])
            text = "\n".join(lines)
        elif kind == 8 and len(lines) > 1:  # delete a line
            del lines[rng.randrange(len(lines))]
            text = "\n".join(lines)
        elif kind == 9 and len(lines) > 1:  # swap two lines
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif kind == 10:  # deeply nested TOML
            n = rng.choice([30, 100, 10000])
            open_, close = rng.choice([("[", "]"), ("{ a = ", " }")])
            text += "\n[globals]\ndeep = %s1%s\n" % (open_ * n, close * n)
        else:  # a huge print
            steps = list(re.finditer(r"\{ print = [^\n]*\}", text))
            if steps:
                m = rng.choice(steps)
                e = rng.choice(["{'x' * 10000}" * 50, "{str(range(100000))}", "{x:>60000}"])
                text = text[: m.start()] + "{ print = %s }" % quote(e) + text[m.end():]
    return text


def classify(code):
    if code is None:
        return "hang"
    if code < 0:
        return "signal"
    if code == 101:
        return "panic"
    return str(code)


def run(cmd, limit_s, env):
    """(exit code or None on a hang, stdout, stderr, seconds)."""
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=limit_s, env=env)
        return (p.returncode, p.stdout.decode("utf-8", "replace"),
                p.stderr.decode("utf-8", "replace"), time.monotonic() - t0)
    except subprocess.TimeoutExpired:
        return None, "", "", time.monotonic() - t0


# A scenario process that panicked or aborted, in `run --format jsonl`:
# its stderr travels as output events, its end as an exit event.
PROCESS_DIED = re.compile(r'panicked at|"kind":"exit","code":101|"signal":"SIG(ABRT|SEGV|BUS|ILL)"')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/debug/forkscope"))
    ap.add_argument("--files", type=int, default=9000)
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--run", type=int, default=300, help="also run this many checkable files")
    ap.add_argument("--limit-s", type=float, default=2.0)
    ap.add_argument("--keep", action="store_true", help="keep the files (path printed)")
    args = ap.parse_args()

    src = os.path.join(ROOT, "assets/scenarios")
    bases = [open(os.path.join(src, f)).read() for f in sorted(os.listdir(src)) if f.endswith(".toml")]
    rng = random.Random(args.seed)
    tmp = tempfile.mkdtemp(prefix="forkscope-mutations-")
    env = dict(os.environ, RUST_BACKTRACE="0")
    counts = {}
    bad = []
    runnable = []
    slowest = (0.0, "")
    try:
        for n in range(args.files):
            text = mutate(rng.choice(bases), rng)
            path = os.path.join(tmp, "m%05d.toml" % n)
            with open(path, "w") as f:
                f.write(text)
            code, _, err, took = run([args.bin, "check", path], args.limit_s, env)
            slowest = max(slowest, (took, os.path.basename(path)))
            c = classify(code)
            counts[c] = counts.get(c, 0) + 1
            if c in ("hang", "signal", "panic"):
                bad.append(("check", c, path, err.strip().splitlines()[-1:] if err else []))
            elif code == 0 and len(runnable) < args.run:
                runnable.append(path)
        run_counts = {}
        child_panics = 0
        for path in runnable:
            cmd = [args.bin, "run", path, "--time-scale", "0.02", "--timeout", "1",
                   "--format", "jsonl"]
            code, out, err, took = run(cmd, args.limit_s + 2, env)
            c = classify(code)
            run_counts[c] = run_counts.get(c, 0) + 1
            died = [l for l in (out + err).splitlines() if PROCESS_DIED.search(l)]
            if died:
                child_panics += 1
                bad.append(("run", "a process panicked or aborted", path, died[:1]))
            if c in ("hang", "signal", "panic"):
                bad.append(("run", c, path, err.strip().splitlines()[-1:] if err else []))
        print("bin: %s  seed: %d  files: %d  limit: %.1f s" % (args.bin, args.seed, args.files, args.limit_s))
        print("check exit codes: %s  (slowest %.2f s: %s)" % (
            dict(sorted(counts.items())), slowest[0], slowest[1]))
        print("check: panics (101) %d, signals %d, hangs %d" % (
            counts.get("panic", 0), counts.get("signal", 0), counts.get("hang", 0)))
        print("run of %d checkable files: %s; runs where a process panicked or aborted: %d" % (
            len(runnable), dict(sorted(run_counts.items())), child_panics))
        for what, c, path, last in bad[:40]:
            print("  %s %s %s %s" % (what, c, os.path.basename(path), " ".join(last)[:160]))
        if args.keep or bad:
            print("files kept in", tmp)
        return 1 if bad else 0
    finally:
        if not (args.keep or bad):
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
