#!/usr/bin/python3
# tlbd: checks shared by the tests of the pictures tlbd draws (tlbd bench
# --plot, tests/bench's summary.svg).  As a program:
#
#   svgcheck.py FILE.svg [PNG]
#
# parses FILE.svg with a real XML parser, checks that it stands alone (an
# <svg> root, no script, no reference to another file, no web font),
# renders it with rsvg-convert (into PNG, or a temporary file) and checks
# that the picture is not blank: enough distinct colours, and enough pixels
# that are not the background.  Exit 0, or 1 with one line naming what is
# wrong.  Tests import it for load() and series().  Standard library only.
import os
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zlib

SVG = "{http://www.w3.org/2000/svg}"


class Bad(Exception):
    pass


def load(path):
    """The root element of PATH, after checking it is a standalone SVG."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise Bad("%s: not well-formed XML: %s" % (path, e))
    if root.tag != SVG + "svg":
        raise Bad("%s: the root is %s, not an SVG <svg>" % (path, root.tag))
    for el in root.iter():
        tag = el.tag.replace(SVG, "")
        if tag in ("script", "foreignObject", "image", "use"):
            raise Bad("%s: has a <%s> element" % (path, tag))
        for k, v in el.attrib.items():
            if k.startswith("on"):
                raise Bad("%s: <%s> has an event handler %s" % (path, tag, k))
            if k.endswith("href") or "url(" in v:
                raise Bad("%s: <%s> refers elsewhere: %s=%r"
                          % (path, tag, k, v))
        if tag == "style" and ("@import" in (el.text or "")
                               or "url(" in (el.text or "")):
            raise Bad("%s: <style> loads something" % path)
    return root


def series(root, cls):
    """{data-kind: element} of the elements of class CLS."""
    return {el.get("data-kind"): el for el in root.iter()
            if el.get("class") == cls}


def points(el):
    """The (x, y) pairs of a polyline's points attribute."""
    return [tuple(float(v) for v in p.split(","))
            for p in el.get("points").split()]


def _unfilter(raw, width, height, bpp):
    stride = width * bpp
    rows = []
    prev = bytearray(stride)
    pos = 0
    for _ in range(height):
        ftype = raw[pos]
        line = bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif ftype == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif ftype == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 255
        elif ftype != 0:
            raise Bad("PNG: bad filter type %d" % ftype)
        rows.append(bytes(line))
        prev = line
    return rows


def png_pixels(path):
    """(width, height, [row bytes], bytes per pixel) of an 8-bit RGB or
    RGBA PNG that is not interlaced (what rsvg-convert writes)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise Bad("%s: not a PNG" % path)
    pos = 8
    idat = b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB",
                                                                body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if depth != 8 or ctype not in (2, 6) or interlace:
        raise Bad("%s: PNG depth %d type %d interlace %d not handled"
                  % (path, depth, ctype, interlace))
    bpp = 4 if ctype == 6 else 3
    return w, h, _unfilter(zlib.decompress(idat), w, h, bpp), bpp


def render(svg, png):
    """Render SVG into PNG with rsvg-convert; (colours, fraction of pixels
    that differ from the top-left one)."""
    p = subprocess.run(["rsvg-convert", "--format", "png", "-o", png, svg],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if p.returncode != 0:
        raise Bad("rsvg-convert %s failed: %s" % (svg, p.stdout.strip()))
    w, h, rows, bpp = png_pixels(png)
    colours = set()
    bg = rows[0][:bpp]
    other = 0
    for row in rows:
        for i in range(0, w * bpp, bpp):
            px = row[i:i + bpp]
            colours.add(px)
            if px != bg:
                other += 1
    return len(colours), other / float(w * h)


def check(svg, png=None, min_colours=4, min_ink=0.01):
    load(svg)
    tmp = None
    if png is None:
        fd, tmp = tempfile.mkstemp(suffix=".png")
        os.close(fd)
        png = tmp
    try:
        colours, ink = render(svg, png)
    finally:
        if tmp:
            os.unlink(tmp)
    if colours < min_colours or ink < min_ink:
        raise Bad("%s renders blank: %d colours, %.2f%% of pixels drawn"
                  % (svg, colours, ink * 100))
    return colours, ink


def main(argv):
    if len(argv) not in (2, 3):
        print("usage: svgcheck.py FILE.svg [PNG]", file=sys.stderr)
        return 2
    try:
        colours, ink = check(argv[1], argv[2] if len(argv) == 3 else None)
    except (Bad, OSError) as e:
        print("svgcheck.py: %s" % e, file=sys.stderr)
        return 1
    print("svgcheck.py: %s: standalone SVG, renders with %d colours, %.1f%% "
          "of pixels drawn" % (argv[1], colours, ink * 100))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
