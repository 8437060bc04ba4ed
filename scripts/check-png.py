#!/usr/bin/env python3
"""Fails unless each PNG is a screenshot of the app showing a run.

A screenshot passes if it exists, decodes, is not blank (one flat colour),
and shows at least one process node on the stage: a rectangle outlined in
one of the process identity colours of either theme (src/app/theme.rs,
`Theme::process_color`), see `find_node`. The idle app (nothing run yet)
has those colours only in small legend swatches, text and filled buttons,
so it fails.

Standard library only, so CI needs nothing extra:
    scripts/check-png.py a.png b.png
    scripts/check-png.py --self-test   (drawn stand-ins: blank, idle, a run)
"""
import struct
import sys
import zlib

# Theme::process_color, dark then presenter (keep in step with theme.rs).
PROCESS_COLOURS = {
    (0x56, 0xB4, 0xE9),
    (0xE6, 0x9F, 0x00),
    (0xCC, 0x79, 0xA7),
    (0xF0, 0xE4, 0x42),
    (0x00, 0x9E, 0x73),
    (0xD5, 0x5E, 0x00),
    (0x9E, 0xC8, 0xFF),
    (0x00, 0x72, 0xB2),
    (0xB0, 0x6A, 0x00),
    (0xA8, 0x3C, 0x7D),
    (0x00, 0x7A, 0x59),
    (0x3A, 0x3A, 0x3A),
    (0x56, 0x7E, 0xC9),
}
# Shortest straight line of one such colour that counts as a node's top or
# bottom border (nodes are well over 100 pixels wide; legend swatches are
# about 12).
MIN_RUN = 60
# Lowest node outline (a button is about 26 pixels high even in the
# presenter theme; a node is over 80).
MIN_HEIGHT = 40
# How far the ends of its top and bottom lines may differ.
SLACK = 4


def read_png(path):
    """Width, height, bytes per pixel and the unfiltered rows."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, width, height, colour, interlace = 8, b"", 0, 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body[:13])
            if depth != 8 or colour not in (2, 6) or interlace != 0:
                raise ValueError(f"unexpected PNG format (depth {depth}, colour {colour})")
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    bpp = 4 if colour == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp
    if len(raw) < height * (stride + 1):
        raise ValueError("truncated image data")
    rows = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        row = bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:  # Sub
            for i in range(bpp, stride):
                row[i] = (row[i] + row[i - bpp]) & 0xFF
        elif kind == 2:  # Up
            row = bytearray((a + b) & 0xFF for a, b in zip(row, prev))
        elif kind == 3:  # Average
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = row[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                row[i] = (row[i] + pred) & 0xFF
        elif kind != 0:
            raise ValueError(f"bad filter type {kind} in row {y}")
        rows.append(row)
        prev = row
    return width, height, bpp, rows


def distinct_colours(width, bpp, rows):
    seen = set()
    for row in rows[:: max(1, len(rows) // 50)]:
        for x in range(0, width * bpp, bpp * max(1, width // 100)):
            seen.add(bytes(row[x : x + 3]))
    return len(seen)


def find_node(width, bpp, rows):
    """The first node outline found: (width, height) in pixels, or None.

    An outline is two horizontal lines of one process colour, at least
    MIN_RUN long, with the same ends (within SLACK pixels), at least
    MIN_HEIGHT apart, with another colour half way between them. Filled
    shapes in those colours (a selected button in the presenter theme is
    sky blue, a state badge has its state's colour) are lower than that or
    the same colour inside.
    """
    runs = {}
    for y, row in enumerate(rows):
        x = 0
        while x < width:
            px = (row[x * bpp], row[x * bpp + 1], row[x * bpp + 2])
            if px not in PROCESS_COLOURS:
                x += 1
                continue
            end = x + 1
            while end < width and (row[end * bpp], row[end * bpp + 1], row[end * bpp + 2]) == px:
                end += 1
            if end - x >= MIN_RUN:
                runs.setdefault(px, []).append((y, x, end))
            x = end
    for px, lines in runs.items():
        for i, (y1, a1, b1) in enumerate(lines):
            for y2, a2, b2 in lines[i + 1 :]:
                if y2 - y1 < MIN_HEIGHT or abs(a1 - a2) > SLACK or abs(b1 - b2) > SLACK:
                    continue
                mid_row = rows[(y1 + y2) // 2]
                mid = (a1 + b1) // 2 * bpp
                if (mid_row[mid], mid_row[mid + 1], mid_row[mid + 2]) != px:
                    return (b1 - a1, y2 - y1)
    return None


def write_png(path, width, height, pixels):
    """An RGB PNG of `pixels` (rows of (r, g, b)), each row with another of
    the five filters, so that reading it back tests every one."""
    raw = bytearray()
    prev = bytearray(width * 3)
    for y, row_px in enumerate(pixels):
        row = bytearray(b for px in row_px for b in px)
        kind = y % 5
        out = bytearray(len(row))
        for i in range(len(row)):
            a = row[i - 3] if i >= 3 else 0
            b = prev[i]
            c = prev[i - 3] if i >= 3 else 0
            if kind == 0:
                pred = 0
            elif kind == 1:
                pred = a
            elif kind == 2:
                pred = b
            elif kind == 3:
                pred = (a + b) >> 1
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out[i] = (row[i] - pred) & 0xFF
        raw += bytes([kind]) + out
        prev = row

    def chunk(kind, body):
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(bytes(raw))))
        f.write(chunk(b"IEND", b""))


def self_test():
    """Drawn stand-ins for a blank window, the idle app and the app with a
    run: only the last one may pass."""
    import os
    import tempfile

    w, h = 320, 240
    sky_blue, orange = (0x56, 0xB4, 0xE9), (0xE6, 0x9F, 0x00)

    def canvas():
        # Dark background with some "text" in many greys.
        img = [[(24, 24, 24)] * w for _ in range(h)]
        for y in range(8, h, 12):
            for x in range(10, w - 10):
                img[y][x] = ((x * 7) % 200 + 30, (x * 3) % 200 + 30, (y * 5) % 200 + 30)
        return img

    def fill(img, x0, y0, x1, y1, colour):
        for y in range(y0, y1):
            for x in range(x0, x1):
                img[y][x] = colour

    idle = canvas()
    fill(idle, 200, 4, 310, 30, sky_blue)  # a selected button (presenter theme)
    fill(idle, 10, 200, 22, 212, orange)  # a legend swatch
    run = [row[:] for row in idle]
    fill(run, 40, 60, 200, 160, sky_blue)  # a node: outline, fill inside
    fill(run, 43, 63, 197, 157, (40, 40, 40))
    blank = [[(24, 24, 24)] * w for _ in range(h)]
    cases = [("blank", blank, False), ("idle", idle, False), ("run", run, True)]
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, img, should_pass in cases:
            path = os.path.join(tmp, name + ".png")
            write_png(path, w, h, img)
            _, _, bpp, rows = read_png(path)
            decoded = [[tuple(r[x * bpp : x * bpp + 3]) for x in range(w)] for r in rows]
            if decoded != img:
                bad.append(f"{name}: decodes to other pixels")
            why = check(path)
            if (why is None) != should_pass:
                bad.append(f"{name}: {why or 'passed'}")
    for b in bad:
        print(f"self-test FAILED: {b}", file=sys.stderr)
    print("self-test ok" if not bad else "self-test failed")
    sys.exit(1 if bad else 0)


def check(path):
    """None if `path` passes, else why not."""
    try:
        w, h, bpp, rows = read_png(path)
        n = distinct_colours(w, bpp, rows)
        if w < 100 or h < 100 or n < 8:
            return f"looks blank ({w}x{h}, {n} distinct samples)"
        node = find_node(w, bpp, rows)
        if node is None:
            return "shows no process node (no outline in a process colour): did the run start?"
        print(f"ok: {path} ({w}x{h}, {n} distinct samples, a {node[0]}x{node[1]} outline)")
        return None
    except (OSError, ValueError, zlib.error, struct.error) as e:
        return str(e)


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
    failed = False
    for path in sys.argv[1:]:
        why = check(path)
        if why is not None:
            print(f"FAILED: {path}: {why}", file=sys.stderr)
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
