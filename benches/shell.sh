#!/usr/bin/env bash
# Figures for the appliance shell: binary size, start-up time to /healthz,
# idle RSS, and sign-in throughput with the default argon2id parameters.
# Each figure comes with a baseline measured in the same run, as a ratio,
# because the machine is shared and noisy. Usage: bash benches/shell.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q
bin=target/release/gpudock
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
now() { date +%s.%N; }

echo "binary: $(stat -c %s $bin) bytes ($(awk "BEGIN{printf \"%.1f\", $(stat -c %s $bin)/1048576}") MiB, stripped)"

# Baseline: the same binary starting and exiting (gpudock --version), 20 runs.
t0=$(now); for _ in $(seq 20); do $bin --version >/dev/null; done; t1=$(now)
exec_ms=$(awk "BEGIN{printf \"%.2f\", ($t1-$t0)/20*1000}")

start_once() { # $1 data dir; sets pid and ms (exec to the first 200 from /healthz)
  local t0 t1
  t0=$(now)
  $bin serve --data-dir "$1" --listen 127.0.0.1:18943 >"$1.log" 2>&1 &
  pid=$!
  until curl -ksf https://127.0.0.1:18943/healthz >/dev/null 2>&1; do sleep 0.005; done
  t1=$(now)
  ms=$(awk "BEGIN{printf \"%.0f\", ($t1-$t0)*1000}")
}
start_once "$work/d1"; first=$ms
initial=$(cat "$work/d1/initial-admin-password")
kill $pid; wait $pid 2>/dev/null || true
start_once "$work/d1"; warm=$ms
echo "start to /healthz: first start ${first} ms (creates db, identity, TLS pair, admin), later start ${warm} ms; process exec baseline ${exec_ms} ms"

sleep 2
rss_idle=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
echo "idle RSS: ${rss_idle} KiB"

# A signed-in admin with a known password, through the API.
pw='Bench-Mark-Quasar-2026!'
cj="$work/cj"
curl -ksf -c "$cj" -b "$cj" https://127.0.0.1:18943/api/v1/auth/login -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$initial\"}" >/dev/null
curl -ksf -c "$cj" -b "$cj" https://127.0.0.1:18943/api/v1/auth/password -H 'content-type: application/json' \
  -d "{\"current_password\":\"$initial\",\"new_password\":\"$pw\"}" >/dev/null

threads=${THREADS:-4}
healthz=$(python3 benches/load.py https://127.0.0.1:18943 healthz "$threads" 4000)
login=$(python3 benches/load.py https://127.0.0.1:18943 login "$threads" 200 admin "$pw")
rss_load=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
echo "sign-in: ${login} req/s (argon2id m=19456 KiB, t=2, p=1; $threads client threads, 2 cores);" \
  "baseline GET /healthz on the same connections ${healthz} req/s; ratio sign-in/healthz $(awk "BEGIN{printf \"%.4f\", $login/$healthz}")"
echo "RSS after the load: ${rss_load} KiB ($(awk "BEGIN{printf \"%.2f\", $rss_load/$rss_idle}") x idle)"
