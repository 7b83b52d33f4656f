#!/usr/bin/env bash
# What the benchmarks need beyond tests/setup-deps.sh, as root, idempotent:
#   - socat (Debian), the plain TCP relay whose CPU is the floor of bench.py's "cpu" part;
#   - ProFTPD's mod_tls (proftpd-mod-crypto) and mod_proxy (proftpd-mod-proxy), unpacked
#     privately beside the proftpd that setup-deps.sh unpacked (proftpd-core conflicts with
#     the other FTP servers as a package, so none of them is installed), for the mod_proxy
#     reference column run through ../shared/peers.
# Starts no service. Env: FTPSGATE_PROFTPD_DIR (default /var/cache/ftpsgate-test/proftpd),
# FTPSGATE_BENCH_DIR (default /var/cache/ftpsgate-bench): where the modules and a module
# directory holding proftpd's own modules plus these two are put.
set -euo pipefail

PROFTPD_DIR="${FTPSGATE_PROFTPD_DIR:-/var/cache/ftpsgate-test/proftpd}"
BENCH_DIR="${FTPSGATE_BENCH_DIR:-/var/cache/ftpsgate-bench}"
log() { printf 'setup-bench: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
[ -x "$PROFTPD_DIR/usr/sbin/proftpd" ] || { log "no proftpd in $PROFTPD_DIR: run tests/setup-deps.sh first"; exit 1; }

need=""
for p in socat libsodium23 libsqlite3-0 libpam0g zlib1g; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; created_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  log "installing:$need"
  # shellcheck disable=SC2086
  apt-get install -y --no-install-recommends $need || { apt-get update; apt-get install -y --no-install-recommends $need; }
  [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# The two modules, unpacked; then one module directory: proftpd's own modules (links) + these.
mkdir -p "$BENCH_DIR/dl"
for pkg in proftpd-mod-crypto proftpd-mod-proxy; do
  dir="$BENCH_DIR/$pkg"
  [ -f "$dir/DEB_VERSION" ] && continue
  ( cd "$BENCH_DIR/dl" && rm -f "${pkg}"_*.deb && { apt-get download "$pkg" || { apt-get update && apt-get download "$pkg"; }; } )
  rm -rf "$dir.tmp"
  dpkg-deb -x "$BENCH_DIR/dl/${pkg}"_*.deb "$dir.tmp"
  basename "$BENCH_DIR/dl/${pkg}"_*.deb > "$dir.tmp/DEB_VERSION"
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
  log "$pkg unpacked into $dir ($(cat "$dir/DEB_VERSION"))"
done
mods="$BENCH_DIR/proftpd-modules"
rm -rf "$mods"; mkdir -p "$mods"
for so in "$PROFTPD_DIR"/usr/lib/proftpd/*.so "$BENCH_DIR"/proftpd-mod-crypto/usr/lib/proftpd/*.so \
          "$BENCH_DIR"/proftpd-mod-proxy/usr/lib/proftpd/*.so; do
  ln -sf "$so" "$mods/$(basename "$so")"
done
for m in mod_tls.so mod_proxy.so; do
  [ -e "$mods/$m" ] || { log "missing $m after unpacking"; exit 1; }
done
log "ProFTPD modules (with mod_tls, mod_proxy): $mods"
