#!/usr/bin/env python3
"""Fails unless each PNG exists, decodes, and is not blank (one flat colour).

Standard library only, so CI needs nothing extra:
    scripts/check-png.py a.png b.png
"""
import struct
import sys
import zlib


def pixels(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, width, height, colour = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            if depth != 8 or colour not in (2, 6):
                raise ValueError(f"unexpected PNG format (depth {depth}, colour {colour})")
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    return width, height, 4 if colour == 6 else 3, raw


def distinct_colours(width, height, bpp, raw):
    # Filter bytes make raw rows differ from pixels, but a flat image still
    # decodes to very few distinct byte patterns; sample rows to be quick.
    stride = width * bpp + 1
    seen = set()
    for y in range(0, height, max(1, height // 50)):
        row = raw[y * stride + 1 : (y + 1) * stride]
        for x in range(0, width * bpp, bpp * max(1, width // 100)):
            seen.add(row[x : x + 3])
    return len(seen)


def main():
    failed = False
    for path in sys.argv[1:]:
        try:
            w, h, bpp, raw = pixels(path)
            n = distinct_colours(w, h, bpp, raw)
            if w < 100 or h < 100 or n < 8:
                raise ValueError(f"looks blank ({w}x{h}, {n} distinct samples)")
            print(f"ok: {path} ({w}x{h}, {n} distinct samples)")
        except (OSError, ValueError, zlib.error) as e:
            print(f"FAILED: {path}: {e}", file=sys.stderr)
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
