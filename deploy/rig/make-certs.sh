#!/bin/sh
# The Compose test rig's certificate step (deploy/compose.yaml, service "certs"): a throwaway
# CA and a server certificate for localhost / 127.0.0.1 / ::1 / ftpsgate, made once per rig.
#   /certs  (the rig's volume, read-only in ftpsgate): server.pem, server.key (readable by
#           uid 10001, the image's user) and ca.pem. The CA's key is never stored.
#   /rig    (deploy/rig/ on the host): ca.pem, for the clients (curl --cacert deploy/rig/ca.pem).
# A rig that is up again keeps its certificates (ftpsgate holds them); `down -v` ends them.
set -eu
umask 022
if [ -s /certs/server.pem ] && [ -s /certs/server.key ] && [ -s /certs/ca.pem ] &&
   openssl x509 -checkend 86400 -noout -in /certs/server.pem >/dev/null 2>&1; then
    cp /certs/ca.pem /rig/ca.pem
    echo "rig certificates: kept (ca.pem copied to deploy/rig/ca.pem)"
    exit 0
fi
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 30 \
    -subj "/CN=ftpsgate test rig CA (throwaway) $(date -u +%Y%m%dT%H%M%SZ)" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$t/ca.key" -out "$t/ca.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -subj "/CN=localhost" \
    -keyout "$t/server.key" -out "$t/server.csr" 2>/dev/null
printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1,DNS:ftpsgate" > "$t/ext"
openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial -sha256 -days 30 \
    -extfile "$t/ext" -out "$t/server.pem" 2>/dev/null
install -m 0644 "$t/ca.pem" /certs/ca.pem
install -m 0644 "$t/server.pem" /certs/server.pem
install -m 0400 -o 10001 -g 10001 "$t/server.key" /certs/server.key
cp "$t/ca.pem" /rig/ca.pem
echo "rig certificates: made a throwaway CA and a server certificate (CA in deploy/rig/ca.pem)"
