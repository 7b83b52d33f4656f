#!/usr/bin/env bash
# Firewall diversion and policy routing for ftpsgate's transparent deployment
# (README.md, "Transparent deployment"; the rules are listed in deploy/TRANSPARENT.md).
# Run as root on the host (router, DMZ box) that runs ftpsgate.
#
#   transparent-setup.sh redirect  --port 21:2121 [--port 990:2990] --passive 50000-50099 [options]
#   transparent-setup.sh tproxy    --port 21:2121 [--port 990:2990] [options]
#   transparent-setup.sh source-ip [options]
#   transparent-setup.sh --remove  [--name N] [--mark M] [--table T] [--ipv6]
#
# Modes:
#   redirect   nat REDIRECT (nftables `redirect` / iptables -j REDIRECT) of the FTP control
#              ports to ftpsgate's listeners, and of ftpsgate's passive port range to itself.
#              ftpsgate reads where the client meant to go with SO_ORIGINAL_DST.
#              Listeners: "backend": {"address": "original-destination", ...}, no "transparent".
#   tproxy     TPROXY of the FTP control ports to ftpsgate's listeners (which need
#              "transparent": true), a mark on every packet of ftpsgate's transparent sockets
#              (passive data ports bound to the server's address, active connections from it,
#              connections to a backend from the client's address), and the policy routing that
#              delivers marked packets locally.
#   source-ip  only the mark and the policy routing, for "backend": {"source": "client"}: the
#              backend's replies to the client's address must reach ftpsgate, not the client.
#              `redirect --source-ip` adds it to a REDIRECT set-up; tproxy always includes it.
#
# Options:
#   --port D:L        divert TCP port D (what clients dial: 21, 990) to ftpsgate's listener port L
#                     (repeatable; redirect and tproxy need at least one)
#   --passive F-L     the passive port range ("passive.ports") of a REDIRECT listener (repeatable)
#   --in IFACE        divert only connections arriving on IFACE (repeatable; default: any interface)
#   --dst CIDR        divert only connections to this network (repeatable; IPv4 or IPv6; default:
#                     any destination; ftpsgate's "backend.allow" still decides what it serves)
#   --source-ip       with redirect: also the return-path routing of source-ip
#   --ipv6            also IPv6 (policy routing with `ip -6`, ip6tables rules); nftables' inet
#                     table covers both families anyway
#   --fw nft|iptables firewall front end (default: nft)
#   --name NAME       the nftables table (inet NAME) / iptables chain (NAME upper-cased) that holds
#                     every rule of this script (default: ftpsgate)
#   --mark N          the firewall mark of packets to deliver locally (default: 1)
#   --table N         the routing table with the `local` default route (default: 100)
#   --dry-run         print the commands and the nftables script instead of running them
#   --remove          remove this script's table/chains (nftables and iptables) and policy routing,
#                     of both families (IPv6 too when the host has it, with or without --ipv6)
#
# Idempotent: running it again replaces the previous rules of NAME (the nftables table is
# replaced atomically; the iptables chains are flushed and refilled; the `ip rule` exists once).
# The host must forward IP packets (net.ipv4.ip_forward=1) when it is a router; this script
# only warns when it does not.
set -euo pipefail

prog=transparent-setup.sh
die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 2; }
note() { printf '%s: %s\n' "$prog" "$*" >&2; }
usage() { sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

mode="" fw=nft name=ftpsgate mark=1 table=100 ipv6=0 source_ip=0 dry=0 remove=0
ports=() passive=() ifaces=() dsts=()

while [ $# -gt 0 ]; do
  case "$1" in
    redirect|tproxy|source-ip)
      [ -z "$mode" ] || die "one mode only (got $mode and $1)"; mode="$1" ;;
    --remove) remove=1 ;;
    --port) [ $# -ge 2 ] || die "--port needs D:L"; ports+=("$2"); shift ;;
    --passive) [ $# -ge 2 ] || die "--passive needs FIRST-LAST"; passive+=("$2"); shift ;;
    --in) [ $# -ge 2 ] || die "--in needs an interface"; ifaces+=("$2"); shift ;;
    --dst) [ $# -ge 2 ] || die "--dst needs a CIDR"; dsts+=("$2"); shift ;;
    --source-ip) source_ip=1 ;;
    --ipv6) ipv6=1 ;;
    --fw) [ $# -ge 2 ] || die "--fw needs nft or iptables"; fw="$2"; shift ;;
    --name) [ $# -ge 2 ] || die "--name needs a name"; name="$2"; shift ;;
    --mark) [ $# -ge 2 ] || die "--mark needs a number"; mark="$2"; shift ;;
    --table) [ $# -ge 2 ] || die "--table needs a number"; table="$2"; shift ;;
    --dry-run) dry=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (--help)" ;;
  esac
  shift
done

# ---- validation: everything goes into nft/iptables command lines, so be strict ----------------
is_port() { case "$1" in ''|*[!0-9]*) return 1 ;; esac; [ "${#1}" -le 5 ] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }
[[ "$name" =~ ^[A-Za-z][A-Za-z0-9_]{0,20}$ ]] || die "--name: letters, digits and _ (at most 21), got '$name'"
[[ "$mark" =~ ^[0-9]+$ ]] && [ "$mark" -ge 1 ] && [ "$mark" -le 4294967295 ] || die "--mark: 1..4294967295"
[[ "$table" =~ ^[0-9]+$ ]] && [ "$table" -ge 1 ] && [ "$table" -le 4294967295 ] \
  && [ "$table" -ne 253 ] && [ "$table" -ne 254 ] && [ "$table" -ne 255 ] || die "--table: a free table number (not 253-255)"
case "$fw" in nft|iptables) ;; *) die "--fw: nft or iptables, got '$fw'" ;; esac
for p in "${ports[@]+"${ports[@]}"}"; do
  [[ "$p" =~ ^([0-9]+):([0-9]+)$ ]] && is_port "${BASH_REMATCH[1]}" && is_port "${BASH_REMATCH[2]}" \
    || die "--port: D:L with two ports, got '$p'"
done
for r in "${passive[@]+"${passive[@]}"}"; do
  [[ "$r" =~ ^([0-9]+)-([0-9]+)$ ]] && is_port "${BASH_REMATCH[1]}" && is_port "${BASH_REMATCH[2]}" \
    && [ "${BASH_REMATCH[1]}" -le "${BASH_REMATCH[2]}" ] || die "--passive: FIRST-LAST, got '$r'"
done
for i in "${ifaces[@]+"${ifaces[@]}"}"; do
  [[ "$i" =~ ^[A-Za-z0-9_.@:-]{1,15}$ ]] || die "--in: not an interface name: '$i'"
done
for d in "${dsts[@]+"${dsts[@]}"}"; do
  [[ "$d" =~ ^[0-9A-Fa-f.:]+(/[0-9]{1,3})?$ ]] || die "--dst: not a CIDR: '$d'"
done
if [ "$remove" = 0 ]; then
  [ -n "$mode" ] || { usage >&2; exit 2; }
  if [ "$mode" != source-ip ] && [ ${#ports[@]} -eq 0 ]; then die "$mode needs at least one --port D:L"; fi
  if [ "$mode" = tproxy ] && [ ${#passive[@]} -gt 0 ]; then
    note "--passive is not needed with tproxy (transparent passive sockets are matched by the socket rule); ignored"
    passive=()
  fi
  if [ "$mode" = redirect ] && [ ${#passive[@]} -eq 0 ]; then
    note "warning: no --passive range: passive data connections to the server's address will not reach ftpsgate"
  fi
fi
[ "$mode" = tproxy ] || [ "$mode" = source-ip ] && source_ip=1
[ "$(id -u)" = 0 ] || [ "$dry" = 1 ] || die "must run as root"

run() {
  if [ "$dry" = 1 ]; then printf '%s\n' "$*"; else "$@"; fi
}
quiet() { # for removals: absent is fine
  if [ "$dry" = 1 ]; then printf '%s\n' "$*"; else "$@" >/dev/null 2>&1 || true; fi
}
have() { command -v "$1" >/dev/null 2>&1; }

CHAIN=$(printf '%s' "$name" | tr '[:lower:]' '[:upper:]')
# Removals (--remove, and the clean-up before a set-up) cover IPv6 too whenever the host has
# it, with or without --ipv6: a rule left over from an earlier --ipv6 run must not survive.
clean6=$ipv6
[ -e /proc/net/if_inet6 ] && [ "$dry" = 0 ] && clean6=1

# ---- policy routing: marked packets are delivered to this host's sockets --------------------
routing_add() {
  local fam
  for fam in 4 6; do
    [ "$fam" = 6 ] && [ "$ipv6" = 0 ] && continue
    local any=0.0.0.0/0; [ "$fam" = 6 ] && any=::/0
    # exactly one rule: delete any copies, then add
    if [ "$dry" = 0 ]; then
      for _ in 1 2 3 4 5 6 7 8; do ip -"$fam" rule del fwmark "$mark" lookup "$table" 2>/dev/null || break; done
    fi
    run ip -"$fam" rule add fwmark "$mark" lookup "$table"
    run ip -"$fam" route replace local "$any" dev lo table "$table"
  done
}
routing_remove() {
  local fam
  for fam in 4 6; do
    [ "$fam" = 6 ] && [ "$clean6" = 0 ] && continue
    local any=0.0.0.0/0; [ "$fam" = 6 ] && any=::/0
    if [ "$dry" = 0 ]; then
      for _ in 1 2 3 4 5 6 7 8; do ip -"$fam" rule del fwmark "$mark" lookup "$table" 2>/dev/null || break; done
    else
      printf '%s\n' "ip -$fam rule del fwmark $mark lookup $table"
    fi
    quiet ip -"$fam" route del local "$any" dev lo table "$table"
  done
}

# ---- nftables ----------------------------------------------------------------------------
nft_set() { # nft_set "a" "b" -> { a, b } or a
  if [ $# -eq 1 ]; then printf '%s' "$1"; else local IFS=','; printf '{ %s }' "$*"; fi
}
nft_match_prefixes() { # one line per destination family: "ip daddr {..} " / "ip6 daddr {..} " / ""
  local v4=() v6=() d
  for d in "${dsts[@]+"${dsts[@]}"}"; do
    if [[ "$d" == *:* ]]; then v6+=("$d"); else v4+=("$d"); fi
  done
  [ ${#dsts[@]} -eq 0 ] && { printf '\n'; return; }
  [ ${#v4[@]} -gt 0 ] && printf 'ip daddr %s \n' "$(nft_set "${v4[@]}")"
  [ ${#v6[@]} -gt 0 ] && printf 'ip6 daddr %s \n' "$(nft_set "${v6[@]}")"
  return 0
}
nft_script() {
  local iif="" q=() i p d l r dst
  if [ ${#ifaces[@]} -gt 0 ]; then
    for i in "${ifaces[@]}"; do q+=("\"$i\""); done
    iif="iifname $(nft_set "${q[@]}") "
  fi
  printf 'table inet %s\ndelete table inet %s\ntable inet %s {\n' "$name" "$name" "$name"
  if [ "$source_ip" = 1 ] || [ "$mode" = tproxy ]; then
    printf '  chain mangle_prerouting {\n    type filter hook prerouting priority mangle; policy accept;\n'
    # Packets of ftpsgate's own transparent sockets: replies from a backend to the client's
    # address, passive ports on the server's address, active connections from it. Not its
    # wildcard TPROXY listeners (0.0.0.0:PORT): traffic forwarded to another host's PORT
    # stays forwarded (the tproxy rules below divert what is meant for ftpsgate). Two rules,
    # because `socket wildcard` does not match half-open (SYN-RECV) and TIME-WAIT sockets.
    printf '    meta l4proto tcp socket transparent 1 socket wildcard 1 accept\n'
    printf '    meta l4proto tcp socket transparent 1 meta mark set %s accept\n' "$mark"
    if [ "$mode" = tproxy ]; then
      while IFS= read -r dst; do
        for p in "${ports[@]}"; do
          d=${p%%:*} l=${p##*:}
          local fam=""
          case "$dst" in "ip daddr"*) fam="ip " ;; "ip6 daddr"*) fam="ip6 " ;; esac
          printf '    %s%smeta l4proto tcp tcp dport %s tproxy %sto :%s meta mark set %s accept\n' \
            "$iif" "$dst" "$d" "$fam" "$l" "$mark"
        done
      done < <(nft_match_prefixes)
    fi
    printf '  }\n'
  fi
  if [ "$mode" = redirect ]; then
    printf '  chain nat_prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n'
    while IFS= read -r dst; do
      for p in "${ports[@]}"; do
        d=${p%%:*} l=${p##*:}
        printf '    %s%stcp dport %s redirect to :%s\n' "$iif" "$dst" "$d" "$l"
      done
      for r in "${passive[@]+"${passive[@]}"}"; do
        printf '    %s%stcp dport %s redirect\n' "$iif" "$dst" "$r"
      done
    done < <(nft_match_prefixes)
    printf '  }\n'
  fi
  printf '}\n'
}

# ---- iptables ----------------------------------------------------------------------------
ipt_tools() { printf 'iptables\n'; [ "$ipv6" = 1 ] && printf 'ip6tables\n'; return 0; }
ipt_chain_fresh() { # TOOL TABLE: CHAIN exists, empty, jumped to once from PREROUTING
  local t="$1" tb="$2"
  if [ "$dry" = 1 ]; then
    printf '%s\n' "$t -t $tb -N $CHAIN" "$t -t $tb -A PREROUTING -j $CHAIN"
    return
  fi
  "$t" -t "$tb" -N "$CHAIN" 2>/dev/null || "$t" -t "$tb" -F "$CHAIN"
  "$t" -t "$tb" -C PREROUTING -j "$CHAIN" 2>/dev/null || "$t" -t "$tb" -A PREROUTING -j "$CHAIN"
}
ipt_chain_remove() {
  local t="$1" tb="$2"
  if [ "$dry" = 0 ]; then
    have "$t" || return 0
    for _ in 1 2 3 4 5 6 7 8; do "$t" -t "$tb" -D PREROUTING -j "$CHAIN" 2>/dev/null || break; done
  else
    printf '%s\n' "$t -t $tb -D PREROUTING -j $CHAIN"
  fi
  quiet "$t" -t "$tb" -F "$CHAIN"
  quiet "$t" -t "$tb" -X "$CHAIN"
}
ipt_rules() {
  local t fam ifs=("") dl=() i d p l r
  [ ${#ifaces[@]} -gt 0 ] && ifs=("${ifaces[@]}")
  while IFS= read -r t; do
    fam=4; [ "$t" = ip6tables ] && fam=6
    dl=()
    for d in "${dsts[@]+"${dsts[@]}"}"; do
      if [[ "$d" == *:* ]]; then [ "$fam" = 6 ] && dl+=("$d"); else [ "$fam" = 4 ] && dl+=("$d"); fi
    done
    if [ ${#dsts[@]} -gt 0 ] && [ ${#dl[@]} -eq 0 ]; then
      dl=(NONE) # destinations given, none of this family: divert nothing of it
    fi
    [ ${#dl[@]} -eq 0 ] && dl=("")
    if [ "$source_ip" = 1 ] || [ "$mode" = tproxy ]; then
      ipt_chain_fresh "$t" mangle
      run "$t" -t mangle -A "$CHAIN" -p tcp -m socket --transparent -j MARK --set-mark "$mark"
      run "$t" -t mangle -A "$CHAIN" -p tcp -m socket --transparent -j ACCEPT
    fi
    if [ "$mode" = redirect ]; then ipt_chain_fresh "$t" nat; fi
    for i in "${ifs[@]}"; do
      for d in "${dl[@]}"; do
        [ "$d" = NONE ] && continue
        local m=(-p tcp)
        [ -n "$i" ] && m=(-i "$i" "${m[@]}")
        [ -n "$d" ] && m=(-d "$d" "${m[@]}")
        for p in "${ports[@]+"${ports[@]}"}"; do
          local dp=${p%%:*} lp=${p##*:}
          if [ "$mode" = tproxy ]; then
            run "$t" -t mangle -A "$CHAIN" "${m[@]}" --dport "$dp" -j TPROXY --on-port "$lp" --tproxy-mark "$mark"
          elif [ "$mode" = redirect ]; then
            run "$t" -t nat -A "$CHAIN" "${m[@]}" --dport "$dp" -j REDIRECT --to-ports "$lp"
          fi
        done
        if [ "$mode" = redirect ]; then
          for r in "${passive[@]+"${passive[@]}"}"; do
            run "$t" -t nat -A "$CHAIN" "${m[@]}" --dport "${r/-/:}" -j REDIRECT
          done
        fi
      done
    done
  done < <(ipt_tools)
}

# ---- main --------------------------------------------------------------------------------
remove_all() {
  if have nft || [ "$dry" = 1 ]; then quiet nft delete table inet "$name"; fi
  local t
  for t in iptables ip6tables; do
    [ "$t" = ip6tables ] && [ "$clean6" = 0 ] && continue
    ipt_chain_remove "$t" mangle
    ipt_chain_remove "$t" nat
  done
  routing_remove
}

if [ "$remove" = 1 ]; then
  remove_all
  [ "$dry" = 1 ] || note "removed table/chains '$name' and the fwmark $mark routing (table $table)"
  exit 0
fi

# A set-up replaces whatever this script set up before under the same name, whichever front end.
if [ "$fw" = nft ]; then
  have nft || [ "$dry" = 1 ] || die "nft not found (Debian: apt-get install nftables)"
  for t in iptables ip6tables; do
    [ "$t" = ip6tables ] && [ "$clean6" = 0 ] && continue
    if [ "$dry" = 0 ]; then ipt_chain_remove "$t" mangle; ipt_chain_remove "$t" nat; fi
  done
  if [ "$dry" = 1 ]; then
    printf 'nft -f - <<EOF\n'; nft_script; printf 'EOF\n'
  else
    nft_script | nft -f -
  fi
else
  have iptables || [ "$dry" = 1 ] || die "iptables not found (Debian: apt-get install iptables)"
  if [ "$dry" = 0 ] && have nft; then nft delete table inet "$name" >/dev/null 2>&1 || true; fi
  if [ "$dry" = 0 ]; then
    for t in iptables ip6tables; do
      [ "$t" = ip6tables ] && [ "$clean6" = 0 ] && continue
      ipt_chain_remove "$t" mangle; ipt_chain_remove "$t" nat
    done
  fi
  ipt_rules
fi
if [ "$source_ip" = 1 ]; then
  routing_add
else
  routing_remove
fi

if [ "$dry" = 0 ]; then
  fwd=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo 1)
  [ "$fwd" = 1 ] || note "note: net.ipv4.ip_forward is 0: a router must forward for the non-diverted traffic"
  if [ "$ipv6" = 1 ]; then
    fwd6=$(cat /proc/sys/net/ipv6/conf/all/forwarding 2>/dev/null || echo 1)
    [ "$fwd6" = 1 ] || note "note: net.ipv6.conf.all.forwarding is 0: a router must forward for the non-diverted traffic"
  fi
  note "$mode rules set up ($fw, name '$name'$( [ "$source_ip" = 1 ] && printf ', fwmark %s -> table %s' "$mark" "$table"))"
fi
