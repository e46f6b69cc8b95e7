#!/usr/bin/env python3
"""tests/svgcheck.py FILE [QUERY...] -- parse an SVG with xml.etree and count.

Each QUERY is TAG or TAG.CLASS (e.g. rect.used, polyline.heap); prints
`QUERY=COUNT` for each, one per line. Elements of the class `key` or `chart`
(legends and summary charts) are not counted, so that rect.free counts the
free blocks drawn, not the legend's swatch. With --text, prints the text of every
<text> element instead, one per line. Exit status 1 if FILE is not
well-formed XML or its root is not <svg>."""
import sys
import xml.etree.ElementTree as ET

NS = "{http://www.w3.org/2000/svg}"


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        root = ET.parse(argv[0]).getroot()
    except (ET.ParseError, OSError) as e:
        print("svgcheck: %s: %s" % (argv[0], e), file=sys.stderr)
        return 1
    if root.tag != NS + "svg":
        print("svgcheck: %s: the root is %s, not svg" % (argv[0], root.tag), file=sys.stderr)
        return 1
    if argv[1:] == ["--text"]:
        for e in root.iter(NS + "text"):
            print("".join(e.itertext()))
        return 0
    counts = {}
    for e in root.iter():
        if {"key", "chart"} & set((e.get("class") or "").split()):
            continue
        tag = e.tag[len(NS):] if e.tag.startswith(NS) else e.tag
        counts[tag] = counts.get(tag, 0) + 1
        for c in (e.get("class") or "").split():
            counts[tag + "." + c] = counts.get(tag + "." + c, 0) + 1
    for q in argv[1:]:
        print("%s=%d" % (q, counts.get(q, 0)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BrokenPipeError:   # a reader such as grep -q stopped early
        sys.exit(0)
