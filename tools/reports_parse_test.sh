#!/bin/bash
# The JSON and JUnit reports parse with Python's json and xml.etree whatever
# bytes the steps' text holds: random bytes, cut and invalid UTF-8, controls,
# U+FFFE, markup. Text that is valid UTF-8 comes back unchanged (JSON) or
# with only what XML 1.0 cannot hold replaced (JUnit).
set -euo pipefail
dump="$(pwd)/tools/reports_dump"
corpus="$(pwd)/testing/fuzz_corpus/reports"
work="${TEST_TMPDIR:-$(mktemp -d)}/reports"
mkdir -p "$work"
python3 - "$dump" "$corpus" "$work" <<'PY'
import json, os, random, subprocess, sys
import xml.etree.ElementTree as ET

dump, corpus, work = sys.argv[1:]
rng = random.Random(20261122)
pieces = ["é", "€", "😀", "\ufffe", "\uffff", "\x01", "\x1b[31m", "<", "&", "]]>",
          '"', "\\", "\n", "\r", "\t", "\u2028", "\x7f", "\x85"]
raw = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82",
       b"\x80", b"\xef\xbf\xbe"]

def text_piece():
    if rng.random() < 0.5:
        return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 8))).encode()
    return rng.choice(raw)

def sample():
    kind = rng.randint(0, 2)
    if kind == 0:
        return os.urandom(rng.randint(0, 300))
    if kind == 1:
        return b"".join(text_piece() for _ in range(rng.randint(0, 20)))
    # A long field cut at a random byte, as an output tail is.
    body = ("é" * rng.randint(1, 3000)).encode()
    return b"exit 4\0msg\0" + body[rng.randint(0, 1):]

inputs = [open(os.path.join(corpus, f), "rb").read() for f in sorted(os.listdir(corpus))]
inputs += [sample() for _ in range(300)]
XML_OK = lambda c: c in "\t\n\r" or 0x20 <= ord(c) <= 0xD7FF or 0xE000 <= ord(c) <= 0xFFFD or ord(c) >= 0x10000
paths = [[os.path.join(work, f"{n}.{ext}") for ext in ("in", "json", "xml")]
         for n in range(len(inputs))]
for data, (src, _, _) in zip(inputs, paths):
    open(src, "wb").write(data)
# One process for all of them (an ASan start-up each took 25 s in all).
subprocess.run([dump] + [p for triple in paths for p in triple], check=True)
for n, data in enumerate(inputs):
    src, js, xm = paths[n]
    fields = (data.split(b"\0", 2) + [b"", b""])[:3]
    try:
        steps = json.load(open(js, encoding="utf-8"))
        suite = ET.parse(xm).getroot()
    except Exception as e:
        sys.exit(f"input {n} {data[:80]!r}: {e}")
    assert len(steps) == 2 and len(suite) == 2, (n, steps)
    try:
        name = fields[0].decode("utf-8")
    except UnicodeDecodeError:
        continue  # replaced; json/xml.etree accepted it, which is the point
    assert steps[0]["command"] == name, (n, steps[0]["command"], name)
    expected_xml = "".join(c if XML_OK(c) else "\ufffd" for c in name)
    assert suite[0].get("name") == expected_xml, (n, suite[0].get("name"), expected_xml)
print(f"{len(inputs)} reports parsed")
PY
