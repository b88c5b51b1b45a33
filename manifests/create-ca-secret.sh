#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Prints the Secret `ambientd-ca` (namespace ambientd) that holds the mesh
# root every node's ambientd shares (mounted as its --ca-dir). Apply it
# before `kubectl apply -k manifests/`:
#
#   manifests/create-ca-secret.sh | kubectl apply -f -
#   manifests/create-ca-secret.sh --from /var/lib/ambientd/node1/ca | kubectl apply -f -
#
# --from DIR takes ca-cert.pem and ca-key.pem from an existing ambientd CA
# directory (what `ambientd --ca-dir DIR` creates on first start). Without
# it, a new root is made in a temporary directory with the same profile as
# ambientd's built-in CA (ECDSA P-256, O=ambientd, CN=ambientd root CA,
# critical CA:TRUE and keyCertSign/cRLSign, 10 years); --keep DIR keeps
# those files there (mode 0600 key). Needs openssl and base64 only.
set -euo pipefail

from="" keep="" ns=ambientd name=ambientd-ca
usage() {
	sed -n '3,15p' "$0" | sed 's/^# \{0,1\}//'
	echo "Options: --from DIR, --keep DIR, --namespace NS (default ambientd), --name NAME (default ambientd-ca)"
}
while [ $# -gt 0 ]; do
	case $1 in
	--from) from=${2:?--from needs a directory}; shift 2 ;;
	--keep) keep=${2:?--keep needs a directory}; shift 2 ;;
	--namespace) ns=${2:?}; shift 2 ;;
	--name) name=${2:?}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "create-ca-secret.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
done

if [ -n "$from" ]; then
	dir=$from
	for f in ca-cert.pem ca-key.pem; do
		[ -r "$dir/$f" ] || { echo "create-ca-secret.sh: $dir/$f: not readable" >&2; exit 1; }
	done
	openssl x509 -in "$dir/ca-cert.pem" -noout 2>/dev/null ||
		{ echo "create-ca-secret.sh: $dir/ca-cert.pem: not a PEM certificate" >&2; exit 1; }
else
	if [ -n "$keep" ]; then
		dir=$keep
		mkdir -p "$dir"
		chmod 700 "$dir"
	else
		dir=$(mktemp -d)
		trap 'rm -rf "$dir"' EXIT
	fi
	(umask 077 && openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null |
		openssl pkey -out "$dir/ca-key.pem")
	openssl req -x509 -new -key "$dir/ca-key.pem" -sha256 -days 3650 \
		-subj "/O=ambientd/CN=ambientd root CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-addext "subjectKeyIdentifier=hash" \
		-out "$dir/ca-cert.pem" 2>/dev/null
fi

b64() { base64 -w0 <"$1"; }
cat <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: $name
  namespace: $ns
  labels:
    app.kubernetes.io/name: ambientd
type: Opaque
data:
  ca-cert.pem: $(b64 "$dir/ca-cert.pem")
  ca-key.pem: $(b64 "$dir/ca-key.pem")
YAML
