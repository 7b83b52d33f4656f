#!/usr/bin/env bash
# ftpsgate quick start, for a fresh Debian 12 machine, run as root:
#
#   sudo bash deploy/quickstart.sh          install, build, start a plain FTP server and ftpsgate
#                                           in front of it (loopback only), print how to connect
#   sudo bash deploy/quickstart.sh --stop   stop the two processes this script started
#
# What it does, in order:
#   1. apt-get installs the build dependencies, openssl, curl and lftp (only what is missing);
#      vsftpd's .deb is downloaded and unpacked privately (dpkg-deb -x) under the state
#      directory, so no system FTP service is installed, started or bound to port 21;
#   2. builds build/ftpsgate with CMake;
#   3. makes a throwaway CA and a server certificate for 127.0.0.1/localhost;
#   4. starts vsftpd, plain FTP, on 127.0.0.1:2121 (anonymous, uploads into /upload);
#   5. starts ftpsgate, explicit FTPS (AUTH TLS), on 127.0.0.1:2990 in front of it, with its
#      metrics endpoint on 127.0.0.1:9121;
#   6. fetches hello.txt through the proxy once with curl, then prints the commands to try.
#
# Everything it writes (certificates, FTP root, configs, logs, PID files) goes under
# $FTPSGATE_QS_DIR (default /var/lib/ftpsgate-quickstart); the build goes to build/.
# Running it again stops the processes it recorded and starts them afresh. --stop
# signals only the PIDs recorded in $FTPSGATE_QS_DIR/pids (each was started with
# setsid, so its process group is its own session processes) and only when the PID
# still runs the expected program.
#
# This quick start shows explicit FTPS (AUTH TLS) only. Implicit FTPS (ftps://, usually
# port 990) is one more listener with "mode": "implicit" (README.md, Configuration).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QS="${FTPSGATE_QS_DIR:-/var/lib/ftpsgate-quickstart}"
HOST=127.0.0.1
FTP_PORT="${QS_FTP_PORT:-2121}"       # vsftpd, plain FTP (the "legacy" backend)
PROXY_PORT="${QS_PROXY_PORT:-2990}"   # ftpsgate, explicit FTPS
ADMIN_PORT="${QS_ADMIN_PORT:-9121}"   # ftpsgate's /metrics and /healthz
BACKEND_PASV_MIN=40600
BACKEND_PASV_MAX=40649
PROXY_PASV="50000-50049"
FTP_SYSUSER=ftpsgate-qs               # unprivileged account vsftpd maps anonymous sessions to

VS_BIN="$QS/vendor/vsftpd/usr/sbin/vsftpd"
FG_BIN="$REPO/build/ftpsgate"
CA="$QS/certs/ca.pem"
ROOT="$QS/ftp-root"

PKGS="build-essential cmake pkg-config libuv1-dev libssl-dev libjansson-dev openssl curl lftp
      ca-certificates libcap2 libpam0g libpam-modules libssl3 libwrap0"
# (the last five are the shared libraries the unpacked vsftpd binary needs)

say() { printf 'quickstart: %s\n' "$*"; }
die() { printf 'quickstart: ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# ---- processes ------------------------------------------------------------------------

# is_ours PID EXE: PID is alive and runs EXE (a rebuilt binary shows as "EXE (deleted)").
is_ours() {
    local pid="$1" exe="$2" cur
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    cur="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
    [ "${cur% (deleted)}" = "$exe" ]
}

# pgrp_of PID: the process group of PID (field 5 of /proc/PID/stat, after "(comm)").
pgrp_of() {
    local stat rest
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    rest="${stat##*) }"
    # shellcheck disable=SC2086
    set -- $rest
    echo "$3"
}

# signal_tree SIG PID: the process group when PID leads its own (setsid), else PID alone.
signal_tree() {
    if [ "$(pgrp_of "$2" || true)" = "$2" ]; then
        kill "-$1" -- "-$2" 2>/dev/null || true
    else
        kill "-$1" "$2" 2>/dev/null || true
    fi
}

wait_gone() {   # PID TENTHS: 0 once PID has exited, 1 if it still runs after TENTHS/10 s
    local _
    for _ in $(seq 1 "$2"); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    ! kill -0 "$1" 2>/dev/null
}

stop_one() {   # NAME EXE
    local name="$1" exe="$2" f="$QS/pids/$1.pid" pid
    [ -f "$f" ] || return 0
    pid="$(cat "$f")"
    if is_ours "$pid" "$exe"; then
        # ftpsgate drains live sessions on SIGTERM and stops at once on a second one.
        signal_tree TERM "$pid"
        wait_gone "$pid" 50 || signal_tree TERM "$pid"
        if ! wait_gone "$pid" 50; then
            say "$name (pid $pid) did not stop within 10 s; sending SIGKILL"
            signal_tree KILL "$pid"
            wait_gone "$pid" 20 || true
        fi
        say "stopped $name (pid $pid)"
    else
        say "$name: recorded pid $pid is not running (or runs something else); nothing to stop"
    fi
    rm -f "$f"
}

stop_all() {
    if [ ! -f "$QS/pids/ftpsgate.pid" ] && [ ! -f "$QS/pids/vsftpd.pid" ]; then
        say "nothing to stop (no PID recorded in $QS/pids)"
        return 0
    fi
    stop_one ftpsgate "$FG_BIN"
    stop_one vsftpd "$VS_BIN"
}

# port_listening PORT: some socket listens on TCP PORT (IPv4 or IPv6), per /proc/net.
port_listening() {
    local hex
    hex="$(printf '%04X' "$1")"
    awk -v p=":$hex" 'FNR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { f = 1 }
                      END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# start_bg NAME LOGFILE CMD ARGS...: run in the background in its own session, record the PID.
start_bg() {
    local name="$1" logf="$2"
    shift 2
    # setsid execs in place (a background child of a script is no group leader), so $!
    # is the program's own PID, and the program leads a process group of its own.
    setsid "$@" >"$logf" 2>&1 </dev/null &
    echo $! >"$QS/pids/$name.pid"
}

wait_listening() {   # NAME PORT LOGFILE
    local name="$1" port="$2" logf="$3" pid
    pid="$(cat "$QS/pids/$name.pid")"
    for _ in $(seq 1 150); do
        port_listening "$port" && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$logf" >&2 || true
            die "$name exited during start-up (log above: $logf)"
        fi
        sleep 0.1
    done
    tail -n 30 "$logf" >&2 || true
    die "$name (pid $pid) is not listening on $HOST:$port after 15 s (log: $logf)"
}

# ---- steps ----------------------------------------------------------------------------

install_packages() {
    local missing="" p
    for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -z "$missing" ] && [ -x "$VS_BIN" ]; then
        say "packages already installed"
        return 0
    fi
    command -v apt-get >/dev/null || die "apt-get not found: this script is for Debian 12"
    export DEBIAN_FRONTEND=noninteractive
    say "apt-get update"
    apt-get update -q
    if [ -n "$missing" ]; then
        say "installing:$missing"
        # shellcheck disable=SC2086
        apt-get install -y -q --no-install-recommends $missing
    fi
    if [ ! -x "$VS_BIN" ]; then
        # Unpacked, not installed: the vsftpd package would start a system service on
        # port 21 and conflicts with other FTP servers that tests may install.
        local dl="$QS/vendor/dl"
        mkdir -p "$dl"
        chown _apt "$dl" 2>/dev/null || true   # lets apt download without its "unsandboxed" warning
        rm -f "$dl"/vsftpd_*.deb
        (cd "$dl" && apt-get download -q vsftpd)
        rm -rf "$QS/vendor/vsftpd"
        dpkg-deb -x "$dl"/vsftpd_*.deb "$QS/vendor/vsftpd"
        say "vsftpd unpacked into $QS/vendor/vsftpd ($(basename "$dl"/vsftpd_*.deb))"
    fi
}

build() {
    say "building $FG_BIN (log: $QS/logs/build.log)"
    if ! { cmake -S "$REPO" -B "$REPO/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
           cmake --build "$REPO/build" --target ftpsgate -j "$(nproc)"; } >"$QS/logs/build.log" 2>&1; then
        tail -n 40 "$QS/logs/build.log" >&2
        die "build failed (full log: $QS/logs/build.log)"
    fi
    "$FG_BIN" --version || true
}

make_certs() {
    local c="$QS/certs"
    mkdir -p "$c"
    if [ -s "$c/server.pem" ] && [ -s "$c/server.key" ] && [ -s "$CA" ] &&
        openssl x509 -checkend 86400 -noout -in "$c/server.pem" >/dev/null 2>&1; then
        say "certificates exist in $c (delete that folder to make new ones)"
        return 0
    fi
    say "making a throwaway CA and a server certificate for 127.0.0.1/localhost in $c"
    cat >"$c/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = ftpsgate quick-start CA (throwaway)
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    cat >"$c/server.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
EOF
    cat >"$c/server.ext" <<'EOF'
subjectAltName = IP:127.0.0.1, DNS:localhost
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    (
        umask 077
        openssl req -x509 -config "$c/ca.cnf" -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
            -nodes -sha256 -days 365 -keyout "$c/ca.key" -out "$c/ca.pem"
        openssl req -new -config "$c/server.cnf" -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
            -nodes -keyout "$c/server.key" -out "$c/server.csr"
        openssl x509 -req -in "$c/server.csr" -CA "$c/ca.pem" -CAkey "$c/ca.key" -CAcreateserial \
            -days 365 -sha256 -extfile "$c/server.ext" -out "$c/server.pem"
    ) >"$QS/logs/certs.log" 2>&1 || { cat "$QS/logs/certs.log" >&2; die "openssl failed"; }
    chmod 644 "$c/ca.pem" "$c/server.pem"
    rm -f "$c/server.csr"
}

make_ftp_root() {
    if ! getent passwd "$FTP_SYSUSER" >/dev/null; then
        # vsftpd chdir()s to this account's home before chroot()ing to anon_root: use "/".
        useradd --system --no-create-home --home-dir / --shell /usr/sbin/nologin "$FTP_SYSUSER"
        say "created system user $FTP_SYSUSER (vsftpd's anonymous sessions run as it)"
    fi
    mkdir -p "$ROOT/upload" "$QS/empty"
    # vsftpd refuses a chroot root writable by the session user: root-owned, 755.
    chown root:root "$ROOT" "$QS/empty"
    chmod 755 "$QS" "$ROOT" "$QS/empty"
    printf 'Hello from ftpsgate: this file travelled through TLS.\n' >"$ROOT/hello.txt"
    chmod 644 "$ROOT/hello.txt"
    chown "$FTP_SYSUSER:" "$ROOT/upload"
    chmod 755 "$ROOT/upload"
}

write_vsftpd_conf() {
    cat >"$QS/conf/vsftpd.conf" <<EOF
# generated by deploy/quickstart.sh: plain FTP on loopback, the backend behind ftpsgate
listen=YES
listen_ipv6=NO
listen_address=$HOST
listen_port=$FTP_PORT
background=NO
ftpd_banner=vsftpd (plain FTP) behind the ftpsgate quick start
anonymous_enable=YES
local_enable=NO
no_anon_password=YES
ftp_username=$FTP_SYSUSER
anon_root=$ROOT
write_enable=YES
anon_upload_enable=YES
anon_mkdir_write_enable=YES
anon_other_write_enable=YES
anon_umask=022
secure_chroot_dir=$QS/empty
pasv_enable=YES
pasv_min_port=$BACKEND_PASV_MIN
pasv_max_port=$BACKEND_PASV_MAX
connect_from_port_20=NO
max_clients=0
max_per_ip=0
xferlog_enable=YES
xferlog_std_format=NO
vsftpd_log_file=$QS/logs/vsftpd.log
syslog_enable=NO
tcp_wrappers=NO
dirmessage_enable=NO
EOF
}

write_ftpsgate_conf() {
    cat >"$QS/conf/ftpsgate.json" <<EOF
{
  "tls": {
    "quickstart": { "cert": "$QS/certs/server.pem", "key": "$QS/certs/server.key" }
  },
  "listeners": [
    {
      "name": "quickstart-explicit",
      "bind": "$HOST:$PROXY_PORT",
      "mode": "explicit",
      "tls": "quickstart",
      "backend": { "address": "$HOST:$FTP_PORT", "data_mode": "passive" },
      "passive": { "ports": "$PROXY_PASV", "announce": "$HOST" },
      "policy": { "login_requires_tls": true, "data_protection": "private" }
    }
  ],
  "log": { "level": "info", "format": "text" },
  "admin": { "bind": "$HOST:$ADMIN_PORT" }
}
EOF
    "$FG_BIN" --check-config --config "$QS/conf/ftpsgate.json" >"$QS/logs/check-config.log" ||
        die "ftpsgate rejected $QS/conf/ftpsgate.json (see the message above)"
    say "config checked: $QS/conf/ftpsgate.json"
}

self_check() {
    local got
    if got="$(curl -sS --max-time 20 --ssl-reqd --cacert "$CA" \
        "ftp://$HOST:$PROXY_PORT/hello.txt" --user anonymous:x 2>&1)" &&
        [ "$got" = "$(cat "$ROOT/hello.txt")" ]; then
        say "self-check passed: hello.txt fetched through ftpsgate over TLS"
        return 0
    fi
    printf '%s\n' "$got" >&2
    tail -n 20 "$QS/logs/ftpsgate.log" >&2 || true
    say "SELF-CHECK FAILED: curl could not fetch hello.txt through ftpsgate (output and proxy log above)."
    say "The processes are left running for inspection; stop them with: bash $REPO/deploy/quickstart.sh --stop"
    exit 1
}

print_howto() {
    local up="$ROOT/upload"
    cat <<EOF

ftpsgate quick start is running (everything on loopback):
  backend  vsftpd, plain FTP          $HOST:$FTP_PORT   pid $(cat "$QS/pids/vsftpd.pid")   root $ROOT
  proxy    ftpsgate, explicit FTPS    $HOST:$PROXY_PORT   pid $(cat "$QS/pids/ftpsgate.pid")   config $QS/conf/ftpsgate.json

Download hello.txt through TLS:
  curl --ssl-reqd --cacert $CA ftp://$HOST:$PROXY_PORT/hello.txt --user anonymous:x

Upload (into /upload; the file lands in $up/):
  echo 'hello back' | curl --ssl-reqd --cacert $CA -T - ftp://$HOST:$PROXY_PORT/upload/hello-back.txt --user anonymous:x

List and fetch with lftp (drop "ls; cat hello.txt; bye" for an interactive session):
  lftp -u anonymous,x -e 'set ftp:ssl-force true; set ftp:ssl-protect-data true; set ssl:ca-file $CA; ls; cat hello.txt; bye' ftp://$HOST:$PROXY_PORT

Without TLS the login is refused (policy login_requires_tls): "curl: (67) Access denied: 534"
  curl ftp://$HOST:$PROXY_PORT/hello.txt --user anonymous:x

Logs and metrics:
  tail -f $QS/logs/ftpsgate.log     # ftpsgate, one line per event
  tail -f $QS/logs/vsftpd.log       # the backend's transfer log
  curl -s http://$HOST:$ADMIN_PORT/metrics

Stop:
  bash $REPO/deploy/quickstart.sh --stop
EOF
}

# ---- main -----------------------------------------------------------------------------

case "${1:-}" in
    "") ;;
    --stop)
        [ "$(id -u)" = 0 ] || die "run as root: sudo bash deploy/quickstart.sh --stop"
        stop_all
        exit 0
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        exit 2
        ;;
esac

[ "$(id -u)" = 0 ] || die "run as root: sudo bash deploy/quickstart.sh"
mkdir -p "$QS/pids" "$QS/logs" "$QS/conf"

stop_all   # a second run restarts cleanly
install_packages
build
make_certs
make_ftp_root
write_vsftpd_conf
write_ftpsgate_conf

for p in "$FTP_PORT" "$PROXY_PORT" "$ADMIN_PORT"; do
    port_listening "$p" &&
        die "TCP port $p is already in use by another program (set QS_FTP_PORT, QS_PROXY_PORT, QS_ADMIN_PORT)"
done

"$VS_BIN" -v 0>&1 2>&1 | head -n 1 || true
start_bg vsftpd "$QS/logs/vsftpd.out" "$VS_BIN" "$QS/conf/vsftpd.conf"
wait_listening vsftpd "$FTP_PORT" "$QS/logs/vsftpd.out"
say "vsftpd listening on $HOST:$FTP_PORT (pid $(cat "$QS/pids/vsftpd.pid"))"

start_bg ftpsgate "$QS/logs/ftpsgate.log" "$FG_BIN" --config "$QS/conf/ftpsgate.json"
wait_listening ftpsgate "$PROXY_PORT" "$QS/logs/ftpsgate.log"
say "ftpsgate listening on $HOST:$PROXY_PORT (pid $(cat "$QS/pids/ftpsgate.pid"))"

self_check
print_howto
