#!/usr/bin/env bash
# Optional, not run by CI: the .deb under a real systemd (PID 1 in a
# systemd-nspawn container booted from a minimal Debian 12 tree), where the
# unit's Type=notify, hardening and journald logging really apply. Needs root,
# debootstrap and systemd-container, and the Debian mirror for the first run
# (the tree is kept in $NSROOT). Usage: bash packaging/test-deb-systemd.sh [DEB]
set -euo pipefail
cd "$(dirname "$0")/.."

NSROOT=${NSROOT:-/var/tmp/gpudock-nspawn}
DEB=${1:-$(ls -t target/debian/gpudock_*_amd64.deb 2>/dev/null | head -n 1)}
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "run as root"
[ -f "$DEB" ] || fail "no .deb: run cargo deb --locked first"
for tool in debootstrap systemd-nspawn nsenter; do
  command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install debootstrap systemd-container)"
done

if [ ! -x "$NSROOT/lib/systemd/systemd" ]; then
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,adduser,curl,ca-certificates \
    bookworm "$NSROOT" http://deb.debian.org/debian
fi
cp "$DEB" "$NSROOT/root/gpudock.deb"

systemd-nspawn -D "$NSROOT" -b --register=no --keep-unit --console=passive >/dev/null 2>&1 &
NSPAWN=$!
trap 'kill "$NSPAWN" 2>/dev/null; wait "$NSPAWN" 2>/dev/null || true' EXIT
INIT=""
for _ in $(seq 300); do
  INIT=$(pgrep -P "$NSPAWN" -x systemd || true)
  [ -n "$INIT" ] && nsenter -t "$INIT" -m -u -i -n -p -- systemctl is-system-running 2>/dev/null |
    grep -Eq 'running|degraded' && break
  sleep 0.1
done
[ -n "$INIT" ] || fail "the container did not boot"

# Everything below runs inside the container, under its systemd.
nsenter -t "$INIT" -m -u -i -n -p -- bash -euo pipefail -s <<'EOF'
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
getent group docker >/dev/null || groupadd --system docker
CERT=/var/lib/gpudock/tls/cert.pem
api() { curl -s -o /tmp/body -w '%{http_code}' --cacert "$CERT" -b /tmp/jar -c /tmp/jar \
  -H 'Content-Type: application/json' -d "$2" "https://localhost:8443$1"; }
T0=$(date +%s.%N)
dpkg -i /root/gpudock.deb
P=$(cat /var/lib/gpudock/initial-admin-password)
for _ in $(seq 600); do
  [ "$(api /api/v1/auth/login "{\"username\":\"admin\",\"password\":\"$P\"}")" = 200 ] && break
  sleep 0.05
done
T1=$(date +%s.%N)
[ "$(api /api/v1/auth/password "{\"current_password\":\"$P\",\"new_password\":\"Systemd-Quartz-Lantern-58!\"}")" = 204 ] ||
  fail "sign-in or password change: $(cat /tmp/body)"
systemctl show -p StatusText --value gpudock | grep -q '^serving on' || fail "no READY status"
id -nG gpudock | grep -qw docker || fail "gpudock not in docker"
RUN=$(systemctl show -p InvocationID --value gpudock)
journal() { journalctl "_SYSTEMD_INVOCATION_ID=$RUN" --no-pager "$@"; }
journal -o verbose | grep -q '_TRANSPORT=journal' || fail "not logging to journald"
! journal -o verbose | grep -q 'PRIORITY=7' || fail "debug records in the journal"
PID=$(systemctl show -p MainPID --value gpudock)
RSS=$(awk '/^VmRSS/ { print $2 }' "/proc/$PID/status")
grep -q '^NoNewPrivs:.1' "/proc/$PID/status" && grep -q '^CapEff:.0000000000000000' "/proc/$PID/status" ||
  fail "hardening not applied"
gpudock backup --to /root/backup.tar.gz
systemctl stop gpudock
[ "$(systemctl show -p Result --value gpudock)" = success ] || fail "stop was not clean"
journal | grep -q 'stopped: database checkpointed and closed' || fail "no clean shutdown logged"
gpudock restore --from /root/backup.tar.gz --force
rm -rf /var/lib/gpudock.before-restore-*
systemctl start gpudock
rm -f /tmp/jar
[ "$(api /api/v1/auth/login '{"username":"admin","password":"Systemd-Quartz-Lantern-58!"}')" = 200 ] ||
  fail "sign-in after restore: $(cat /tmp/body)"
dpkg -r gpudock
! systemctl is-active --quiet gpudock || fail "still running after remove"
[ -f /var/lib/gpudock/gpudock.db ] || fail "remove deleted the data"
dpkg --purge gpudock
[ ! -e /var/lib/gpudock ] && [ ! -e /etc/gpudock ] && ! getent passwd gpudock >/dev/null ||
  fail "purge left something"
awk -v a="$T0" -v b="$T1" -v r="$RSS" 'BEGIN {
  printf "under systemd: dpkg -i start to first sign-in %.2f s; RSS %d KiB\n", b - a, r }'
echo "test-deb-systemd: 1 passed, 0 failed"
EOF
