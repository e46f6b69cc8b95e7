#!/usr/bin/env python3
"""scripts/check_layers.py [ROOT] — fail when a module uses a layer above its own.

memalloc's modules form layers, each using only the ones below it. LAYERS
below is the one table of them: the layers bottom up, each with its modules in
order. A module may use the modules of lower layers and the modules listed
before it in its own layer; so the module graph has no cycle.

The script reads every module's file (found from src/lib.rs's `mod` lines and
their `#[path]` attributes), strips comments, and collects each use of another
module: `use crate::m...`, `use crate::{m..., n...}`, and paths written inline,
`crate::m::x` or `$crate::m::x` in macros. It fails (exit 1), listing each
offending line, when:
  - a module uses a module of a higher layer, or a later one of its own layer;
  - src/lib.rs declares a module that LAYERS does not list, or LAYERS lists a
    module that src/lib.rs does not declare, or src/lib.rs declares them in
    another order than LAYERS, bottom up;
  - a module's file is not src/LAYER/MODULE.rs, in the folder of its layer.
A module's submodules, in src/LAYER/MODULE/ (e.g. src/small/cache/fast.rs),
count as the module: their uses are checked as its own.
src/lib.rs itself, the crate root, wires the layers together and may use any.

ROOT defaults to the repository holding this script; tests/scripts_test.sh runs
it on a copy with a deliberate violation.
"""
import os
import re
import sys

# The layers, bottom up: (name, modules in order). The name is also the
# folder of src/ that holds the layer's files.
LAYERS = [
    # The process and the OS: system calls, keys, locks, output, settings,
    # the counters and trace the layers above publish, the thread slot.
    ("sys", ["os", "gate", "guard", "lock", "report", "prof", "config", "events", "tls"]),
    # The general heap: chunk headers, regions, the TLSF index, the zone map,
    # pools, the shared heap, blocks mapped on their own, debug mode's blocks.
    ("heap", ["chunk", "region", "tlsf", "zonemap", "pool", "heap", "large", "debug"]),
    # Small blocks: size classes, zones, thread caches.
    ("small", ["cache", "mcache"]),
    # Figures about all of the above: statistics, mallinfo, the dump.
    ("stats", ["stats"]),
    # The C ABI.
    ("abi", ["export", "api"]),
]


def rank_table():
    """module -> (layer index, index in layer, layer name)"""
    ranks = {}
    for li, (layer, mods) in enumerate(LAYERS):
        for mi, m in enumerate(mods):
            if m in ranks:
                sys.exit("check_layers: %s is listed twice in LAYERS" % m)
            ranks[m] = (li, mi, layer)
    return ranks


def strip_comments(text, strings=True):
    """The text with // and /* */ comments blanked (newlines kept), and with
    `strings`, the contents of string literals blanked too."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif strings and c == '"' and not (i and text[i - 1] in "'"):
            # A plain string (raw strings with # are not used in src/).
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('"' + re.sub(r"[^\n]", " ", text[i + 1:j]) + '"')
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def group_heads(body):
    """First path segments of the items of a `{...}` use group."""
    heads, depth, item = [], 0, ""
    for ch in body + ",":
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            m = re.match(r"\s*(\w+)", item)
            if m:
                heads.append(m.group(1))
            item = ""
        else:
            item += ch
    return heads


def uses(text):
    """(line number, module) for each use of another module in `text`."""
    found = []
    for m in re.finditer(r"(?<![\w$])\$?crate\s*::\s*(\{|\w+)", text):
        line = text.count("\n", 0, m.start()) + 1
        if m.group(1) == "{":
            depth, j = 1, m.end()
            while j < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            for h in group_heads(text[m.end():j - 1]):
                found.append((line, h))
        else:
            found.append((line, m.group(1)))
    return found


def declared_modules(root):
    """module -> file path (relative to root), from src/lib.rs, in the order
    of the declarations."""
    lib = os.path.join(root, "src", "lib.rs")
    text = strip_comments(open(lib, encoding="utf-8").read(), strings=False)
    mods = {}
    pattern = r'((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;'
    for m in re.finditer(pattern, text):
        attrs, name = m.group(1), m.group(2)
        p = re.search(r'path\s*=\s*"([^"]+)"', attrs)
        mods[name] = os.path.join("src", p.group(1) if p else name + ".rs")
    return mods


def submodule_files(root, path):
    """The files of a module's submodules: src/LAYER/MODULE/**.rs, for the
    module in src/LAYER/MODULE.rs (relative to root, sorted)."""
    folder = os.path.join(root, path[:-len(".rs")])
    found = []
    for d, _, files in os.walk(folder):
        found += [os.path.relpath(os.path.join(d, f), root) for f in files if f.endswith(".rs")]
    return sorted(found)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ranks = rank_table()
    mods = declared_modules(root)
    errors = []
    for name in sorted(set(mods) - set(ranks)):
        errors.append("src/lib.rs declares module `%s`, which LAYERS in scripts/check_layers.py "
                      "does not list: add it to its layer" % name)
    for name in sorted(set(ranks) - set(mods)):
        errors.append("LAYERS lists module `%s`, which src/lib.rs does not declare" % name)
    order = [m for m in mods if m in ranks]
    if order != sorted(order, key=lambda m: ranks[m]):
        errors.append("src/lib.rs declares the modules in another order than the layers, "
                      "bottom up: %s" % " ".join(sorted(order, key=lambda m: ranks[m])))
    for name, path in sorted(mods.items()):
        if name not in ranks:
            continue
        li, mi, layer = ranks[name]
        want = os.path.join("src", layer, name + ".rs")
        if os.path.normpath(path) != want:
            errors.append("%s: module `%s` of layer `%s` belongs in %s" % (path, name, layer, want))
        full = os.path.join(root, path)
        if not os.path.exists(full):
            errors.append("%s: the file of module `%s` does not exist" % (path, name))
            continue
        for f in [path] + submodule_files(root, path):
            text = strip_comments(open(os.path.join(root, f), encoding="utf-8").read())
            for line, dep in uses(text):
                if dep == name:
                    continue
                if dep not in ranks:
                    if dep in mods:
                        continue  # reported above
                    errors.append("%s:%d: `crate::%s` is not a module of LAYERS" % (f, line, dep))
                    continue
                dli, dmi, dlayer = ranks[dep]
                if (dli, dmi) > (li, mi):
                    where = ("layer `%s`, above `%s`" % (dlayer, layer)) if dli > li else \
                            ("later in layer `%s`" % layer)
                    errors.append("%s:%d: `%s` uses `%s` (%s)" % (f, line, name, dep, where))
    for e in errors:
        print("check_layers: " + e)
    if errors:
        print("check_layers: %d violation(s) of the layer order" % len(errors))
        return 1
    print("check_layers: %d modules in %d layers, every use points down (%s)"
          % (len(ranks), len(LAYERS), " < ".join(l for l, _ in LAYERS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
