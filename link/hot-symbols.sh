#!/usr/bin/env bash
# Regenerates link/hot-symbols.txt: the functions that start-up and the first
# sign-in (with the password change, as benches/shell.sh measures) run, which
# build.rs asks lld to lay out together at the start of .text (release only).
# A stale list never breaks a build: lld skips names it does not find.
#
# Needs root: the binary runs from a small ext4 image on a loop device whose
# read-ahead is off, started cold, so that exactly the pages its code touches
# are read into the page cache (and no 64 KiB fault-around or read-ahead
# window). mincore(2) then lists them, and lld's link map of the same link
# names the functions on them.
#
# Symbol names carry a hash of the crate's build (its features and those of
# everything it depends on). A plain `cargo build --release` (cargo deb,
# benches/shell.sh) and `cargo build --release --bench NAME` (dev-dependencies
# unify more features: rustls, syn, ...) give different names for most
# functions, so a list made from one flavour does little for the other.
# KEEP=1 keeps the names already listed after the new ones: run once per
# flavour to serve both.
#
# Usage (repository root, as root): bash link/hot-symbols.sh
#   PORT=18975; BENCH=instances builds the bench flavour instead of the plain
#   one; BIN and MAP for a binary linked elsewhere (MAP: its -Wl,-Map, made
#   with --no-demangle); KEEP=1 as above.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-18975}
work=$(mktemp -d)
pid="" mnt="$work/mnt"
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  wait 2>/dev/null || true
  mountpoint -q "$mnt" && umount "$mnt"
  rm -rf "$work"
}
trap cleanup EXIT
if [ -z "${BIN:-}" ]; then
  # build.rs writes lld's link map where GPUDOCK_LINK_MAP says (re-links only).
  GPUDOCK_LINK_MAP="$work/map" cargo build --release --locked -q ${BENCH:+--bench "$BENCH"}
  BIN=target/release/gpudock MAP="$work/map"
fi
truncate -s 256M "$work/img"
mkfs.ext4 -q -F "$work/img"
mkdir "$mnt"
mount -o loop "$work/img" "$mnt"
cp "$BIN" "$mnt/gpudock"
umount "$mnt"
mount -o loop "$work/img" "$mnt" # cold: nothing of the copy is cached
dev=$(basename "$(findmnt -n -o SOURCE "$mnt")")
echo 0 >"/sys/block/$dev/queue/read_ahead_kb"

base=https://127.0.0.1:$port
"$mnt/gpudock" serve --data-dir "$work/d" --listen "127.0.0.1:$port" --ssh-listen 127.0.0.1:0 >"$work/log" 2>&1 &
pid=$!
until curl -ksf "$base/healthz" >/dev/null 2>&1; do sleep 0.02; done
sleep 2
initial=$(cat "$work/d/initial-admin-password")
pw='Hot-Symbols-Quasar-2026!'
cj="$work/cj"
login() {
  curl -ksf -c "$cj" -b "$cj" "$base/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$1\"}" >/dev/null
}
login "$initial"
curl -ksf -c "$cj" -b "$cj" "$base/api/v1/auth/password" -H 'content-type: application/json' \
  -d "{\"current_password\":\"$initial\",\"new_password\":\"$pw\"}" >/dev/null
login "$pw"
sleep 1
python3 - "$mnt/gpudock" >"$work/pages" <<'PY'
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
vec = (ctypes.c_ubyte * ((size + 4095) // 4096))()
if libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) != 0:
    sys.exit("mincore failed")
print("\n".join(str(i) for i, v in enumerate(vec) if v & 1))
PY
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=""
python3 link/hot_symbols.py "$BIN" "$MAP" "$work/pages" >"$work/hot"
if [ -n "${KEEP:-}" ] && [ -f link/hot-symbols.txt ]; then
  awk 'NR == FNR { seen[$0] = 1; print; next } !($0 in seen)' "$work/hot" link/hot-symbols.txt >"$work/both"
  mv "$work/both" "$work/hot"
fi
mv "$work/hot" link/hot-symbols.txt
echo "link/hot-symbols.txt: $(wc -l <link/hot-symbols.txt) functions on $(wc -l <"$work/pages") pages read"
