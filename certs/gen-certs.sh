#!/bin/sh
# Generates a development CA, a server certificate (SAN localhost, 127.0.0.1,
# ::1) and a client certificate into DIR (default: this folder), from the
# .cnf files beside this script. Keys are P-256 ECDSA. Existing files are
# kept unless --force is given. Keys are never committed (.gitignore).
#
#   gen-certs.sh [--force] [DIR] [DAYS]
#   gen-certs.sh --expired DIR   (an already expired server certificate,
#                                 expired.{pem,key}, signed by DIR's CA: tests)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
force=0
if [ "${1:-}" = "--expired" ]; then
    out=$2
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    : > "$work/index.txt"
    echo 1000 > "$work/serial"
    cat > "$work/ca.cnf" <<CNF
[ ca ]
default_ca = dev
[ dev ]
database = $work/index.txt
serial = $work/serial
new_certs_dir = $work
default_md = sha256
policy = any
copy_extensions = none
[ any ]
commonName = supplied
CNF
    umask 077
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/expired.key" 2>/dev/null
    openssl req -new -config "$here/server.cnf" -key "$out/expired.key" -out "$work/expired.csr"
    openssl ca -batch -notext -config "$work/ca.cnf" -cert "$out/ca.pem" -keyfile "$out/ca.key" \
        -startdate 20200101000000Z -enddate 20200102000000Z \
        -extfile "$here/server.cnf" -extensions v3_server \
        -in "$work/expired.csr" -out "$out/expired.pem" 2>/dev/null
    chmod 644 "$out/expired.pem"
    echo "wrote $out/expired.{pem,key} (expired 2020-01-02)"
    exit 0
fi
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
out=${1:-$here}
days=${2:-825}
mkdir -p "$out"
if [ $force -eq 0 ] && [ -f "$out/server.pem" ] && [ -f "$out/client.pem" ] && [ -f "$out/ca.pem" ]; then
    echo "certificates already in $out (use --force to regenerate)"
    exit 0
fi
umask 077
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key "$out/ca.key"
openssl req -new -x509 -config "$here/ca.cnf" -key "$out/ca.key" -days "$days" -out "$out/ca.pem"
for who in server client; do
    key "$out/$who.key"
    openssl req -new -config "$here/$who.cnf" -key "$out/$who.key" -out "$out/$who.csr"
    openssl x509 -req -in "$out/$who.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" \
        -CAcreateserial -days "$days" -extfile "$here/$who.cnf" -extensions "v3_$who" \
        -out "$out/$who.pem" 2>/dev/null
    rm -f "$out/$who.csr"
done
rm -f "$out/ca.srl"
chmod 644 "$out/ca.pem" "$out/server.pem" "$out/client.pem"
echo "wrote $out/{ca,server,client}.{pem,key}"
