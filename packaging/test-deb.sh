#!/usr/bin/env bash
# The .deb test (CI runs it from .ci/run after the cargo tests; needs root).
# Builds the package with cargo-deb, checks it with lintian (errors fail,
# warnings are listed), installs it with dpkg -i, checks files, owners and
# modes, verifies the unit with systemd-analyze, starts the installed binary as
# the gpudock user the way the unit does (its ExecStart, Environment= and
# UMask=, a reset environment, no new privileges, no capabilities: there is no
# systemd as PID 1 here), waits for /healthz over HTTPS by polling, signs in as
# admin and changes the password, backs up and restores the packaged data dir
# as root, stops the server with SIGTERM (clean exit), then dpkg -r (data kept)
# and dpkg --purge (nothing left). Prints the .deb size, the installed size and
# the time from `dpkg -i` to the first successful sign-in.
set -euo pipefail
cd "$(dirname "$0")/.."

UNIT=/lib/systemd/system/gpudock.service
DATA=/var/lib/gpudock
CONF=/etc/gpudock/gpudock.toml
NEW_PASSWORD='Packaged-Quartz-Lantern-58!'

say() { printf '== %s\n' "$*"; }
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  [ -n "${LOG:-}" ] && [ -f "$LOG" ] && { echo "--- server log:" >&2; tail -n 40 "$LOG" >&2; }
  exit 1
}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

[ "$(id -u)" -eq 0 ] || fail "run as root (dpkg -i, setpriv)"
! dpkg -s gpudock >/dev/null 2>&1 || fail "gpudock is installed here already; dpkg --purge gpudock first"
for tool in cargo-deb lintian systemd-analyze curl setpriv; do
  command -v "$tool" >/dev/null || fail "$tool is missing (see .ci/run)"
done

WORK=$(mktemp -d)
LOG=$WORK/server.log
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  if dpkg -s gpudock >/dev/null 2>&1 || [ -d "$DATA" ]; then dpkg --purge gpudock >/dev/null 2>&1 || true; fi
  rm -rf "$WORK" "$DATA".before-restore-*
}
trap cleanup EXIT

# --- build and lint -----------------------------------------------------------
say "cargo deb --locked"
DEB=$(cargo deb --locked | tail -n 1)
[ -f "$DEB" ] || fail "cargo deb did not print the package path"
say "lintian $DEB"
lintian --fail-on none "$DEB" >"$WORK/lintian" 2>&1 || true
cat "$WORK/lintian"
grep -q '^E:' "$WORK/lintian" && fail "lintian reports errors"
WARNINGS=$(grep -c '^W:' "$WORK/lintian" || true)

# --- install ------------------------------------------------------------------
say "dpkg -i"
T0=$(now)
dpkg -i "$DEB"
dpkg-query -L gpudock >"$WORK/files"

say "files, owners, modes, user"
[ -x /usr/bin/gpudock ] || fail "/usr/bin/gpudock missing"
[ -f "$UNIT" ] || fail "$UNIT missing"
dpkg-query -W -f='${Conffiles}\n' gpudock | grep -q "^ $CONF " || fail "$CONF is not a conffile"
if grep -Eq '^[a-z_]+ *=' "$CONF"; then fail "$CONF sets options (all must be commented)"; fi
[ "$(stat -c '%a %U %G' "$DATA")" = "750 gpudock gpudock" ] || fail "$DATA: $(stat -c '%a %U %G' "$DATA")"
getent passwd gpudock | grep -q ":$DATA:/usr/sbin/nologin$" || fail "gpudock user: $(getent passwd gpudock)"
if getent group docker >/dev/null; then
  id -nG gpudock | tr ' ' '\n' | grep -qx docker || fail "gpudock is not in the docker group"
fi
/usr/bin/gpudock check --config "$CONF" | grep -q "data_dir $DATA" || fail "gpudock check"

say "systemd-analyze verify"
# Offline: no systemd as PID 1 is needed. Any message about our unit fails.
systemd-analyze verify "$UNIT" >"$WORK/verify" 2>&1 || { cat "$WORK/verify"; fail "systemd-analyze verify"; }
if grep -q gpudock "$WORK/verify"; then cat "$WORK/verify"; fail "systemd-analyze verify warns"; fi
# The metrics agent's unit ships disabled (enabled after enrolment).
AGENT_UNIT=/lib/systemd/system/gpudock-agent.service
[ -f "$AGENT_UNIT" ] || fail "$AGENT_UNIT missing"
[ ! -e /etc/systemd/system/multi-user.target.wants/gpudock-agent.service ] || fail "gpudock-agent is enabled"
systemd-analyze verify "$AGENT_UNIT" >"$WORK/verify" 2>&1 || { cat "$WORK/verify"; fail "systemd-analyze verify agent"; }
if grep -q gpudock "$WORK/verify"; then cat "$WORK/verify"; fail "systemd-analyze verify warns (agent)"; fi
/usr/bin/gpudock agent --help | grep -q enroll || fail "gpudock agent --help"

# --- run it as the unit does -------------------------------------------------
unit_value() { sed -n "s/^$1=//p" "$UNIT"; }
read -r -a EXEC <<<"$(unit_value ExecStart)"
mapfile -t ENVS < <(unit_value Environment)
UMASK=$(unit_value UMask)
[ "$(unit_value User)" = gpudock ] || fail "the unit does not run as gpudock"
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=8443
OVERRIDE=()
if port_busy 8443 || port_busy 2026; then
  # Someone else uses the default ports on this machine: move both, as a
  # drop-in with Environment=GPUDOCK_LISTEN=... would.
  PORT=18443
  while port_busy "$PORT" || port_busy $((PORT + 1)); do PORT=$((PORT + 2)); done
  OVERRIDE=("GPUDOCK_LISTEN=0.0.0.0:$PORT" "GPUDOCK_SSH_LISTEN=127.0.0.1:$((PORT + 1))")
  say "default ports busy here; using $PORT"
fi
start_server() {
  (
    cd /
    umask "$UMASK"
    exec setpriv --reuid=gpudock --regid=gpudock --init-groups --reset-env \
      --no-new-privs --inh-caps=-all --bounding-set=-all \
      env "${ENVS[@]}" "${OVERRIDE[@]}" "${EXEC[@]}"
  ) >>"$LOG" 2>&1 &
  PID=$!
}
wait_healthy() {
  local deadline=$((SECONDS + 60))
  until [ -f "$DATA/tls/cert.pem" ] &&
    curl -fsS --cacert "$DATA/tls/cert.pem" "https://localhost:$PORT/healthz" >/dev/null 2>&1; do
    kill -0 "$PID" 2>/dev/null || fail "the server exited"
    [ "$SECONDS" -lt "$deadline" ] || fail "/healthz did not answer within 60 s"
    sleep 0.1
  done
}
api() { # METHOD PATH JSON -> prints the HTTP status
  curl -sS -o "$WORK/body" -w '%{http_code}' --cacert "$DATA/tls/cert.pem" \
    -b "$WORK/jar" -c "$WORK/jar" -X "$1" -H 'Content-Type: application/json' \
    ${3:+--data "$3"} "https://localhost:$PORT$2"
}
stop_server() {
  kill -TERM "$PID"
  local rc=0
  wait "$PID" || rc=$?
  PID=""
  [ "$rc" -eq 0 ] || fail "exit status $rc after SIGTERM"
  grep -q "stopped: database checkpointed and closed" "$LOG" || fail "no clean shutdown in the log"
}

say "start: ${EXEC[*]} (as gpudock, ${ENVS[*]}, umask $UMASK)"
start_server
wait_healthy
[ -s "$DATA/initial-admin-password" ] || fail "no initial-admin-password"
INITIAL=$(cat "$DATA/initial-admin-password")
[ "$(api POST /api/v1/auth/login "{\"username\":\"admin\",\"password\":\"$INITIAL\"}")" = 200 ] ||
  fail "sign-in: $(cat "$WORK/body")"
T1=$(now)
[ "$(api POST /api/v1/auth/password "{\"current_password\":\"$INITIAL\",\"new_password\":\"$NEW_PASSWORD\"}")" = 204 ] ||
  fail "password change: $(cat "$WORK/body")"
[ "$(api GET /api/v1/me)" = 200 ] && grep -q '"username":"admin"' "$WORK/body" || fail "/api/v1/me: $(cat "$WORK/body")"
RSS=$(awk '/^VmRSS/ { print $2 }' "/proc/$PID/status")
[ -z "$(find "$DATA" ! -user gpudock)" ] || fail "files not owned by gpudock: $(find "$DATA" ! -user gpudock)"
[ "$(stat -c %a "$DATA/age.key")" = 600 ] || fail "age.key mode"

say "backup as root while serving, then SIGTERM"
gpudock backup --to "$WORK/backup.tar.gz" --config "$CONF"
[ "$(stat -c %a "$WORK/backup.tar.gz")" = 600 ] || fail "backup archive mode"
stop_server
[ ! -e "$DATA/gpudock.db-wal" ] || fail "WAL left after a clean stop"

say "restore --force into the packaged data dir (as root), start again"
gpudock restore --from "$WORK/backup.tar.gz" --force --config "$CONF"
[ "$(stat -c '%a %U %G' "$DATA")" = "750 gpudock gpudock" ] || fail "restored $DATA: $(stat -c '%a %U %G' "$DATA")"
[ -z "$(find "$DATA" ! -user gpudock)" ] || fail "restored files not owned by gpudock"
start_server
wait_healthy
rm -f "$WORK/jar"
[ "$(api POST /api/v1/auth/login "{\"username\":\"admin\",\"password\":\"$NEW_PASSWORD\"}")" = 200 ] ||
  fail "sign-in after restore: $(cat "$WORK/body")"
stop_server
rm -rf "$DATA".before-restore-*

# --- remove and purge ---------------------------------------------------------
say "dpkg -r: data, configuration and user stay"
dpkg -r gpudock
[ ! -e /usr/bin/gpudock ] || fail "/usr/bin/gpudock left after remove"
[ -f "$DATA/gpudock.db" ] && [ -f "$CONF" ] && getent passwd gpudock >/dev/null ||
  fail "remove must keep data, configuration and user"

say "dpkg --purge: nothing left"
dpkg --purge gpudock
for what in "$DATA" /etc/gpudock /etc/systemd/system/multi-user.target.wants/gpudock.service; do
  [ ! -e "$what" ] || fail "$what left after purge"
done
! getent passwd gpudock >/dev/null || fail "user gpudock left after purge"
! getent group gpudock >/dev/null || fail "group gpudock left after purge"
while read -r path; do
  [ -e "$path" ] || continue
  # A directory other packages own too (/usr/bin, /etc, ...) stays.
  [ -d "$path" ] && dpkg-query -S "$path" >/dev/null 2>&1 && continue
  fail "$path left after purge"
done <"$WORK/files"
! dpkg -s gpudock >/dev/null 2>&1 || fail "dpkg still knows gpudock"

# --- figures ------------------------------------------------------------------
DEB_BYTES=$(stat -c %s "$DEB")
INSTALLED_KIB=$(dpkg-deb -f "$DEB" Installed-Size)
cat <<EOF
== figures
.deb: $(basename "$DEB"), $DEB_BYTES bytes ($(awk -v b="$DEB_BYTES" 'BEGIN { printf "%.1f", b / 1048576 }') MiB)
installed size: $INSTALLED_KIB KiB (Installed-Size)
dpkg -i start to first successful sign-in: $(secs "$T0" "$T1") s
server RSS after sign-in and password change: ${RSS} KiB
lintian warnings: $WARNINGS
test-deb: 1 passed, 0 failed
EOF
