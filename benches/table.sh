#!/usr/bin/env bash
# Issue 11's whole table in one run: each figure with the baseline measured
# in the same run (the machine is shared and noisy), as printed by
#  - benches/shell.sh: start-up, RSS after start and sign-in, sign-in
#    throughput, the instance list (page and API) against nginx;
#  - `cargo bench --bench remote`: `ssh cat` / `-tt` / web terminal against
#    `docker exec`, recordings against terminal bytes, 100 idle jumpbox
#    sessions' RSS (needs root and the test packages of README);
#  - `cargo bench --bench instances`: candidate-nodes at 1,000 nodes /
#    20,000 instances over HTTPS against GET /api/v1/me.
# Usage: bash benches/table.sh   (SKIP_REMOTE=1 / SKIP_INSTANCES=1 to leave
# a part out; the variables of shell.sh apply)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo build --release --locked -q
BIN=target/release/gpudock bash benches/shell.sh | tee "$out/shell"
if [ -z "${SKIP_REMOTE:-}" ]; then
  cargo bench --locked -q --bench remote 2>/dev/null | tee "$out/remote"
fi
if [ -z "${SKIP_INSTANCES:-}" ]; then
  cargo bench --locked -q --bench instances 2>/dev/null | tee "$out/instances"
fi
touch "$out/remote" "$out/instances"
row() { # $1 measure, $2 goal, $3 file, $4 pattern: the matching lines
  echo "| $1 | $2 |"
  grep -E -- "$4" "$out/$3" | sed 's/^ */|   | | /' || echo "|   | | (not measured)"
}
echo
echo "| measure | goal | measured (ratio against the baseline of the same run) |"
echo "|---|---|---|"
row "RSS after start and the first sign-in" "<= 30 MB" shell '^RSS:'
row "RSS with 100 idle jumpbox sessions" "<= 80 MB" remote 'with 100 idle|idle, after'
row "ssh cat 100 MiB through the jumpbox" ">= 0.9x docker exec cat" remote 'docker exec \(no TTY\)|command mode|aes256-gcm'
row "ssh -tt and web terminal" ">= 0.9x docker exec -t" remote 'docker exec -t|ssh -tt|web terminal'
row "candidate-nodes, 1,000 nodes / 20,000 instances" "<= 5 ms" instances 'candidate-nodes|/api/v1/me|ratio candidate|snapshot query'
row "instance list, 50 clients" ">= 0.5x nginx" shell '^list '
row "start to /healthz" "max <= 300 ms" shell '^start to'
row "recording" "<= 1.0x terminal bytes" remote '= [0-9.]+$'
