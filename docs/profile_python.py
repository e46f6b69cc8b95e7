"""docs/profile_python.py -- the program behind docs/python-peak.svg.

    PYTHONMALLOC=malloc scripts/run.sh --profile docs/python-peak.svg \
        python3 docs/profile_python.py

Writes a JSON file of 100,000 records (about 10 MB), reads it back whole and
parses it, then drops the text and keeps the objects. What it holds at its
peak is known from Python's sources: the text read (a bytes object of the
file's size, decoded into a str of as many characters), and the parsed
objects: one dict per record (a dict and its keys table), the strings the
scanner makes, the lists. PYTHONMALLOC=malloc sends Python's small objects
to malloc too (pymalloc would carve them from arenas it maps itself, which
no malloc-level profiler sees). Prints the sizes to compare the profile with.
"""
import json
import os
import sys
import tempfile

N = 100_000
path = os.path.join(tempfile.gettempdir(), "memalloc-profile-%d.json" % os.getpid())
with open(path, "w") as f:
    json.dump([{"id": i, "name": "user%06d" % i, "email": "user%06d@example.org" % i,
                "tags": ["alpha", "beta", "gamma"][: i % 4], "score": i * 0.5}
               for i in range(N)], f)
size = os.path.getsize(path)
with open(path) as f:
    text = f.read()
records = json.loads(text)
text_bytes = sys.getsizeof(text)
del text
os.unlink(path)
MiB = 2 ** 20
dicts = sum(sys.getsizeof(r) for r in records)
values = sum(sys.getsizeof(r[k]) for r in records for k in ("name", "email"))
tags = sum(sys.getsizeof(t) for r in records for t in r["tags"])
lists = sum(sys.getsizeof(r["tags"]) for r in records) + sys.getsizeof(records)
ints = sum(sys.getsizeof(r["id"]) for r in records if r["id"] > 256)
floats = sum(sys.getsizeof(r["score"]) for r in records)
print("file %.1f MiB; text (str) %.1f MiB; dicts %.1f MiB; name and email strs %.1f MiB; "
      "tag strs %.1f MiB; lists %.1f MiB; ints %.1f MiB; floats %.1f MiB"
      % (size / MiB, text_bytes / MiB, dicts / MiB, values / MiB, tags / MiB, lists / MiB,
         ints / MiB, floats / MiB))
