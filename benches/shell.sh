#!/usr/bin/env bash
# Figures for the appliance shell, each with a baseline measured in the same
# run (the machine is shared and noisy), printed as a ratio:
#  1. binary size;
#  2. start-up to /healthz on an existing data dir, median and maximum of
#     STARTS runs, against exec of the same binary (`gpudock --version`);
#  3. RSS after start, after the first sign-in and after a flood of 200
#     sign-ins, against the same process idle before any sign-in;
#  4. sign-in throughput against GET /healthz on the same connections;
#  5. the instance list (page and API) with 1,000 instances under 50
#     clients (wrk), against nginx serving the same bytes over the same TLS
#     pair (needs nginx: `apt-get install nginx-light`; skipped without it).
# Usage: bash benches/shell.sh   (STARTS=20 THREADS=4 ROWS=1000 SECS=8 BIN=...)
set -euo pipefail
cd "$(dirname "$0")/.."
# BIN: a binary built elsewhere (otherwise the release build).
if [ -z "${BIN:-}" ]; then cargo build --release --locked -q; fi
bin=${BIN:-target/release/gpudock}
work=$(mktemp -d)
port=18943
base=https://127.0.0.1:$port
pid=""
ngx=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  [ -n "$ngx" ] && kill "$ngx" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
ratio() { awk "BEGIN{printf \"%.2f\", $1/$2}"; }
rss() { awk '/VmRSS/{print $2}' /proc/$pid/status; }

echo "binary: $(stat -c %s $bin) bytes ($(awk "BEGIN{printf \"%.1f\", $(stat -c %s $bin)/1048576}") MiB, stripped)"

# Baseline: the same binary starting and exiting (gpudock --version), 20 runs.
t0=$(now); for _ in $(seq 20); do $bin --version >/dev/null; done; t1=$(now)
exec_ms=$(awk "BEGIN{printf \"%.2f\", ($t1-$t0)/20*1000}")

start_once() { # $1 data dir; sets pid and ms (exec to the first 200 from /healthz)
  local t0 t1
  t0=$(now)
  $bin serve --data-dir "$1" --listen 127.0.0.1:$port --ssh-listen 127.0.0.1:0 >>"$1.log" 2>&1 &
  pid=$!
  until curl -ksf $base/healthz >/dev/null 2>&1; do sleep 0.002; done
  t1=$(now)
  ms=$(awk "BEGIN{printf \"%.0f\", ($t1-$t0)*1000}")
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

start_once "$work/d1"; first=$ms
initial=$(cat "$work/d1/initial-admin-password")
stop
starts=${STARTS:-20}
times=()
for _ in $(seq "$starts"); do start_once "$work/d1"; times+=("$ms"); stop; done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
median=$(echo "$sorted" | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
max=$(echo "$sorted" | tail -1)
echo "start to /healthz on an existing data dir ($starts starts): median ${median} ms, max ${max} ms" \
  "(goal: max <= 300 ms); first start ${first} ms (creates db, identity, TLS pair, admin);" \
  "exec baseline ${exec_ms} ms; max / exec $(ratio "$max" "$exec_ms")"

start_once "$work/d1"
sleep 2
rss_idle=$(rss)
# The first sign-in: the admin signs in and sets a known password.
pw='Bench-Mark-Quasar-2026!'
cj="$work/cj"
curl -ksf -c "$cj" -b "$cj" $base/api/v1/auth/login -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$initial\"}" >/dev/null
curl -ksf -c "$cj" -b "$cj" $base/api/v1/auth/password -H 'content-type: application/json' \
  -d "{\"current_password\":\"$initial\",\"new_password\":\"$pw\"}" >/dev/null
curl -ksf -c "$cj" -b "$cj" $base/api/v1/auth/login -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$pw\"}" >/dev/null
sleep 1
rss_first=$(rss)

threads=${THREADS:-4}
healthz=$(python3 benches/load.py $base healthz "$threads" 4000)
login=$(python3 benches/load.py $base login "$threads" 200 admin "$pw")
sleep 1
rss_load=$(rss)
echo "sign-in: ${login} req/s (argon2id m=19456 KiB, t=2, p=1; $threads client threads, 2 cores);" \
  "baseline GET /healthz on the same connections ${healthz} req/s; ratio sign-in/healthz $(awk "BEGIN{printf \"%.4f\", $login/$healthz}")"
echo "RSS: idle before any sign-in ${rss_idle} KiB (baseline); after the first sign-in ${rss_first} KiB" \
  "($(ratio "$rss_first" "$rss_idle") x idle; goal <= 30 MB = 29297 KiB);" \
  "after 200 sign-ins ${rss_load} KiB ($(ratio "$rss_load" "$rss_idle") x idle)"
stop

# The instance list with ROWS instances, under 50 clients, against nginx.
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  echo "instance list: skipped (needs nginx and wrk)"
  exit 0
fi
rows=${ROWS:-1000}
python3 benches/seed_instances.py "$work/d1/gpudock.db" "$rows"
start_once "$work/d1"
cookie=$(awk '$6 ~ /^(id|gpudock)/ {print $6"="$7}' "$cj" | paste -sd';')
mkdir -p "$work/www/api/v1"
curl -ksf -b "$cj" $base/instances -o "$work/www/instances"
curl -ksf -b "$cj" $base/api/v1/instances -o "$work/www/api/v1/instances"
cat >"$work/nginx.conf" <<EOF
user root;
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:18944 ssl;
    ssl_certificate $work/d1/tls/cert.pem;
    ssl_certificate_key $work/d1/tls/key.pem;
    root $work/www;
    location = /instances { default_type text/html; }
    location = /api/v1/instances { default_type application/json; }
  }
}
EOF
nginx -c "$work/nginx.conf" -g 'daemon off;' &
ngx=$!
until curl -ksf https://127.0.0.1:18944/instances >/dev/null 2>&1; do sleep 0.01; done
wrk_rps() { # $1 url; prints requests/s and p50 latency
  wrk -t2 -c50 -d${SECS:-8}s --latency -H "Cookie: $cookie" "$1" |
    awk '/Requests\/sec/{r=$2} /^ +50%/{p=$2} END{print r, p}'
}
for path in /instances /api/v1/instances; do
  bytes=$(stat -c %s "$work/www$path")
  read -r ours ours_p50 < <(wrk_rps "$base$path")
  read -r theirs theirs_p50 < <(wrk_rps "https://127.0.0.1:18944$path")
  echo "list $path ($rows instances, $bytes bytes a response, 50 clients):" \
    "gpudock ${ours} req/s (p50 ${ours_p50}), nginx ${theirs} req/s (p50 ${theirs_p50});" \
    "ratio $(ratio "$ours" "$theirs") (goal >= 0.5)"
done
