#!/usr/bin/env bash
# TLS audit (`make tls-audit`): sslyze, from PyPI in a virtualenv of its own, against a development relay
# reached with the demo gateway's certificate. Asserts TLS 1.3 only, no HTTP answer without a client
# certificate, a chain valid for localhost, and no weak key-exchange groups; prints the summary.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.build-tls-audit/venv
[ -x "$venv/bin/sslyze" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q sslyze; }
work=$(mktemp -d /tmp/amane-tls.XXXXXX)
.build/debug/amane-relayd serve --dev --data-dir "$work/data" --listen 127.0.0.1:0 --ops-listen 127.0.0.1:0 >"$work/out" 2>"$work/log" &
daemon=$!
trap 'kill $daemon 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do grep -q 'development) is listening' "$work/out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/.*listening on port \([0-9]*\),.*/\1/p' "$work/out")
dev="$work/data/dev"; ca="$work/data/pki/ca-cert.pem"

"$venv/bin/sslyze" --quiet --cert "$dev/gateway-cert.pem" --key "$dev/gateway-key.pem" --certinfo_ca_file "$ca" \
    --sslv2 --sslv3 --tlsv1 --tlsv1_1 --tlsv1_2 --tlsv1_3 --elliptic_curves --certinfo \
    --json_out="$work/sslyze.json" "localhost:$port{127.0.0.1}" >/dev/null
# The same request with the gateway's certificate answers 200, so that a failure without one is the refusal itself
# (curl 35 or 56: the handshake refused, or the alert at the first read under TLS 1.3), not a relay that is down.
with_cert=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" --cert "$dev/gateway-cert.pem" --key "$dev/gateway-key.pem" \
    "https://127.0.0.1:$port/v1/me" || true)
no_cert_exit=0
no_cert=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" "https://127.0.0.1:$port/v1/me") || no_cert_exit=$?
hostname_check=$(openssl s_client -connect "127.0.0.1:$port" -CAfile "$ca" -verify_hostname localhost -verify_return_error \
    -cert "$dev/gateway-cert.pem" -key "$dev/gateway-key.pem" </dev/null 2>/dev/null | sed -n 's/.*Verify return code: \([0-9]*\).*/\1/p' | head -1)

python3 - "$work/sslyze.json" "$no_cert $no_cert_exit $with_cert" "$hostname_check" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))["server_scan_results"][0]["scan_result"]
accepted = lambda name: [c["cipher_suite"]["name"] for c in report[name]["result"]["accepted_cipher_suites"]]
older = {name: accepted(name) for name in ["ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites",
                                           "tls_1_1_cipher_suites", "tls_1_2_cipher_suites"]}
tls13 = accepted("tls_1_3_cipher_suites")
deployment = report["certificate_info"]["result"]["certificate_deployments"][0]
supplied = [p for p in deployment["path_validation_results"] if p["trust_store"]["name"] == "Supplied CA file"]
curves = [c["name"] for c in report["elliptic_curves"]["result"]["supported_curves"]]
strong = {"X25519", "X448", "secp256r1", "prime256v1", "secp384r1", "secp521r1", "X25519MLKEM768"}
checks = [
    ("TLS 1.3 only", tls13 and not any(older.values()), f"TLS 1.3 suites {tls13}; older accepted {sum(map(len, older.values()))}"),
    ("no client certificate means no HTTP answer", sys.argv[2].split() in (["000", "35", "200"], ["000", "56", "200"]),
     "curl without a certificate: HTTP code, curl exit, and with the gateway's certificate: HTTP code = " + sys.argv[2]),
    ("the chain is valid for localhost", bool(supplied) and supplied[0]["was_validation_successful"] and sys.argv[3] == "0",
     f"path validation with the relay CA: {supplied[0]['was_validation_successful'] if supplied else 'missing'}; openssl hostname check code {sys.argv[3]}"),
    ("no weak groups", bool(curves) and set(curves) <= strong, f"groups {', '.join(curves)}"),
]
print("TLS audit (sslyze)")
for name, ok, detail in checks:
    print(f"  {'ok  ' if ok else 'FAIL'} {name}: {detail}")
failed = sum(1 for _, ok, _ in checks if not ok)
print(f"{len(checks) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
