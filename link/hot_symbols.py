#!/usr/bin/env python3
"""Writes lld's symbol ordering file for the code that start-up and the first
sign-in run (see link/hot-symbols.sh, which makes the inputs).

usage: hot_symbols.py BINARY MAP PAGES > link/hot-symbols.txt
  BINARY  the release binary that ran (readelf gives .text's address and offset)
  MAP     lld's link map of that binary (-Wl,-Map=..., with --no-demangle)
  PAGES   the binary's file pages that were read while it ran, one index a line

Every function whose section overlaps a page that was read is listed, in
address order, by the first symbol of its section."""
import re
import subprocess
import sys

binary, map_path, pages_path = sys.argv[1:4]
text = None
for line in subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True, check=True).stdout.splitlines():
    m = re.match(r"\s*\[\s*\d+\]\s+\.text\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
    if m:
        text = tuple(int(g, 16) for g in m.groups())
if text is None:
    sys.exit("no .text section in " + binary)
vma0, off0, size0 = text
delta = vma0 - off0
touched = {int(p) for p in open(pages_path) if p.strip()}

section_re = re.compile(r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s+(\S.*):\((\.text[^)]*)\)\s*$")
symbol_re = re.compile(r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+[0-9a-f]+\s+\d+\s+(\S+)\s*$")
hot, seen = [], set()
current = None  # (start, size, hot?) of the input section whose symbols follow
picked = False
with open(map_path, errors="replace") as f:
    for line in f:
        m = section_re.match(line)
        if m:
            start, size = int(m.group(1), 16), int(m.group(2), 16)
            is_hot = False
            if size and vma0 <= start < vma0 + size0:
                first, last = (start - delta) // 4096, (start + size - 1 - delta) // 4096
                is_hot = any(p in touched for p in range(first, last + 1))
            current, picked = (start, is_hot), False
            continue
        m = symbol_re.match(line)
        if m and current and current[1] and not picked:
            name = m.group(2)
            if name.startswith(".") or name in seen:
                continue
            seen.add(name)
            hot.append(name)
            picked = True
            continue
print("\n".join(hot))
