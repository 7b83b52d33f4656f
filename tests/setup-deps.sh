#!/usr/bin/env bash
# Installs what building and testing ftpsgate needs on Debian 12, as root.
# Idempotent: installs only missing packages, and reuses the unpacked vsftpd.
# Starts no system service (a policy-rc.d that refuses every start is in place
# while apt runs, and removed afterwards when this script created it).
#
# vsftpd conflicts, as a Debian package, with the other FTP servers later
# issues test against (proftpd-core, pure-ftpd), so it is never installed:
# its .deb is fetched with `apt-get download` and unpacked with `dpkg-deb -x`
# into $FTPSGATE_VSFTPD_DIR (default /var/cache/ftpsgate-test/vsftpd), outside
# the repository. Its shared-library dependencies are installed normally.
#
# Env: FTPSGATE_VSFTPD_DIR, FTPSGATE_TEST_USER (default ftpsgate-test).
#
# pure-ftpd and proftpd-core (the other backends of the topology matrix) conflict
# the same way, so they are unpacked alike, into $FTPSGATE_PUREFTPD_DIR (default
# /var/cache/ftpsgate-test/pure-ftpd) and $FTPSGATE_PROFTPD_DIR (default
# /var/cache/ftpsgate-test/proftpd); their shared libraries are installed normally.
# nftables is for the NAT test (network namespaces with a DNAT).
set -euo pipefail

VS_DIR="${FTPSGATE_VSFTPD_DIR:-/var/cache/ftpsgate-test/vsftpd}"
TEST_USER="${FTPSGATE_TEST_USER:-ftpsgate-test}"

log() { printf 'setup-deps: %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "must run as root (installs Debian packages, creates a system user)"
  exit 1
fi

BUILD_PKGS="build-essential cmake pkg-config libuv1-dev libssl-dev libjansson-dev clang libclang-rt-14-dev"
# Test clients and tools; libwrap0 .. libpam-modules are vsftpd's run-time libraries;
# systemd for `systemd-analyze verify` of the unit, util-linux for unshare;
# testssl.sh for the TLS scan (test_tls_scan.py); rclone for policy "client" (test_rclone.py);
# logrotate for deploy/logrotate-ftpsgate (test_transfer_log.py); gdb for the soak's RSS check
# (malloc_trim(0) in the proxy before its memory is compared); chromium (headless, driven over
# the DevTools protocol) for the status page (test_status_page.py).
TEST_PKGS="curl lftp openssl python3 procps iproute2 ca-certificates testssl.sh rclone logrotate
           libwrap0 libcap2 libpam0g libpam-modules libssl3 systemd util-linux gdb chromium"
# Topology tests (issue 5): pyftpdlib backend, NAT test tools, and the run-time
# libraries of the privately unpacked pure-ftpd and proftpd.
TOPO_PKGS="python3-pyftpdlib nftables
           libsodium23 libcrypt1 libhiredis0.14 libmemcached11 libmemcachedutil2 libpcre2-posix3"
# Transparent deployment tests (issue 6): haproxy sends PROXY headers in front of
# ftpsgate (run as a child of the test, never as a service); iptables, conntrack
# and iproute2 for deploy/transparent-setup.sh's rule sets and policy routing.
TRANSPARENT_PKGS="haproxy iptables conntrack iproute2 nftables"

# Container tests (issue 9): Debian's Docker engine and Compose (the tests start dockerd
# when none runs, and stop it), debootstrap for the debian:12-slim base image (no registry
# is reachable), PyYAML for reading the Kubernetes example, man-db/groff for the manual pages.
CONTAINER_PKGS="docker.io docker-compose debootstrap python3-yaml man-db groff-base iptables"

need=""
for p in $BUILD_PKGS $TEST_PKGS $TOPO_PKGS $TRANSPARENT_PKGS $CONTAINER_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done

created_policy=0
cleanup() { if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT

if [ -n "$need" ]; then
  # Debian's invoke-rc.d asks policy-rc.d before starting a service; 101 = refused.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  log "installing:$need"
  # Try without a fresh index first (fast when the lists are current), then
  # update and retry: a fresh machine may have no lists at all.
  # shellcheck disable=SC2086
  if ! apt-get install -y --no-install-recommends $need; then
    apt-get update
    # shellcheck disable=SC2086
    apt-get install -y --no-install-recommends $need
  fi
fi

# The FTP servers, unpacked privately from their .debs (never installed, never
# started as services; they conflict with each other as packages).
# unpack_private PACKAGE DIR BINARY: idempotent.
unpack_private() {
  local pkg="$1" dir="$2" bin="$3" dl
  [ -x "$dir/$bin" ] && return 0
  dl="$(dirname "$dir")/dl"
  mkdir -p "$dl"
  if ! ( cd "$dl" && rm -f "${pkg}"_*.deb && apt-get download "$pkg" ); then
    apt-get update
    ( cd "$dl" && rm -f "${pkg}"_*.deb && apt-get download "$pkg" )
  fi
  rm -rf "$dir.tmp"
  dpkg-deb -x "$dl/${pkg}"_*.deb "$dir.tmp"
  basename "$dl/${pkg}"_*.deb > "$dir.tmp/DEB_VERSION"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  log "$pkg unpacked into $dir ($(cat "$dir/DEB_VERSION"))"
}
unpack_private vsftpd "$VS_DIR" usr/sbin/vsftpd
"$VS_DIR/usr/sbin/vsftpd" -v 0>&1 2>&1 | head -1 >&2 || true

unpack_private pure-ftpd "${FTPSGATE_PUREFTPD_DIR:-/var/cache/ftpsgate-test/pure-ftpd}" usr/sbin/pure-ftpd
unpack_private proftpd-core "${FTPSGATE_PROFTPD_DIR:-/var/cache/ftpsgate-test/proftpd}" usr/sbin/proftpd

# vsftpd maps anonymous sessions to this unprivileged account (ftp_username).
# It chdir()s to the account's home before chroot()ing to anon_root, so the
# home is "/", which always exists.
if ! getent passwd "$TEST_USER" >/dev/null; then
  useradd --system --no-create-home --home-dir / --shell /usr/sbin/nologin "$TEST_USER"
  log "created system user $TEST_USER"
fi
exit 0
