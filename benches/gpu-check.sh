#!/usr/bin/env bash
# GPU check for a host with an NVIDIA GPU and driver (run by hand; no cargo,
# no Docker needed): given a release-built gpudock binary, it
#  1. shows what the binary needs at run time (ldd; libnvidia-ml is loaded
#     at run time, not linked) and the newest glibc symbol version it uses;
#  2. runs the NVML collector once (`gpudock agent probe`) and prints, per GPU,
#     model, UUID, utilisation, memory, temperature, power (and nvidia-smi's
#     view of the same, when present, to compare);
#  3. enrols and starts `gpudock agent` on 127.0.0.1 for a few seconds and
#     prints its /metrics lines with DCGM_* names, checking that a scrape
#     without the token is refused (401).
# Finishes within 60 s. Usage: bash benches/gpu-check.sh target/release/gpudock
set -uo pipefail
BIN="$(readlink -f "${1:-target/release/gpudock}")"
[ -x "$BIN" ] || { echo "usage: $0 PATH/TO/gpudock (release build)"; exit 2; }
say() { printf '\n== %s\n' "$*"; }
TMP="$(mktemp -d)"
AGENT=""
cleanup() { [ -n "$AGENT" ] && kill "$AGENT" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

say "host"
uname -srm; . /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"
ldd --version 2>/dev/null | head -1
say "binary: $BIN ($(stat -c %s "$BIN") bytes)"
ldd "$BIN" || true
if ldd "$BIN" 2>/dev/null | grep -q "not found"; then echo "MISSING LIBRARIES ABOVE"; fi
if command -v objdump >/dev/null; then
  echo "newest glibc symbol version needed: $(objdump -T "$BIN" | grep -o 'GLIBC_[0-9.]*' | sort -V | tail -1)"
fi
"$BIN" --version

say "nvidia-smi (for comparison)"
if command -v nvidia-smi >/dev/null; then
  timeout 15 nvidia-smi --query-gpu=index,name,uuid,utilization.gpu,utilization.memory,memory.used,memory.total,temperature.gpu,power.draw,power.limit,clocks.sm,fan.speed,driver_version --format=csv || true
else
  echo "nvidia-smi not found"
fi

say "NVML collector (gpudock agent probe)"
timeout 20 "$BIN" agent probe --data-dir "$TMP/agent" >"$TMP/probe.json" 2>"$TMP/probe.err"
echo "exit status $? (0: GPUs read; 3: no GPU telemetry, reason given)"
cat "$TMP/probe.err"
if command -v python3 >/dev/null; then
  python3 - "$TMP/probe.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
if d.get("gpu_absent"):
    print("no GPU figures:", d["gpu_absent"])
for g in d.get("gpus", []):
    gib = lambda b: "-" if b is None else "%.1f GiB" % (b / 2**30)
    print("GPU %s  %s  %s" % (g["index"], g["name"], g["uuid"]))
    print("   util %s %%  mem-util %s %%  memory %s / %s  temp %s C  power %s W (limit %s W)  SM %s MHz  fan %s %%  ECC volatile %s  last XID %s  processes %d" % (
        g["util_pct"], g["mem_util_pct"], gib(g["mem_used_bytes"]), gib(g["mem_total_bytes"]), g["temp_c"],
        g["power_w"], g["power_limit_w"], g["sm_clock_mhz"], g["fan_pct"], g["ecc_volatile"], g["xid"], len(g["processes"])))
    for p in g["processes"]:
        print("     pid %s %s %s" % (p["pid"], p["name"], gib(p["used_bytes"])))
h = d["host"]
print("host: load %s  memory %.1f / %.1f GiB  filesystems %d  interfaces %d" % (
    h.get("load"), ((h.get("mem_total") or 0) - (h.get("mem_available") or 0)) / 2**30, (h.get("mem_total") or 0) / 2**30,
    len(h.get("filesystems", [])), len(h.get("net", []))))
PY
else
  head -c 4000 "$TMP/probe.json"
fi

say "gpudock agent (127.0.0.1, a few seconds)"
TOKEN="gda_gpucheck_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$BIN" agent enroll --token "$TOKEN" --data-dir "$TMP/agent"
PORT=19401
while (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do PORT=$((PORT + 1)); done
"$BIN" agent --listen "127.0.0.1:$PORT" --data-dir "$TMP/agent" >"$TMP/agent.log" 2>&1 &
AGENT=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
if command -v curl >/dev/null; then
  echo "without the token: HTTP $(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$PORT/metrics")"
  curl -sk --max-time 20 -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$PORT/metrics" >"$TMP/metrics.txt"
  echo "with the token: $(wc -l <"$TMP/metrics.txt") lines"
  grep -E '^(DCGM_|gpudock_agent_|gpudock_gpu_process)' "$TMP/metrics.txt" | head -150
  echo "host lines (node_exporter names): $(grep -c '^node_' "$TMP/metrics.txt")"
  grep -E '^node_(load1|memory_MemTotal_bytes|memory_MemAvailable_bytes) ' "$TMP/metrics.txt"
else
  echo "curl not found: cannot scrape the agent"
fi
kill "$AGENT" 2>/dev/null; wait "$AGENT" 2>/dev/null; AGENT=""
echo "agent log:"; cat "$TMP/agent.log"
say "done"
