#!/usr/bin/env bash
# Deploy checks, run by `make test`: the unit files, `make install` and `make uninstall`, and the installed
# daemon end to end, started as the unit would start it (credentials, notify socket, an unprivileged user),
# with a backup restored into a second daemon.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
work=$(mktemp -d /tmp/amane-deploy.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}" $(cat "$work/daemon.pids" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
passed=0
failed=0
check() {
    if eval "$2"; then passed=$((passed + 1)); echo "ok - $1"; else failed=$((failed + 1)); echo "not ok - $1"; fi
}

echo "# unit files"
exposure=$(systemd-analyze security --offline=true Deploy/amane-relayd.service 2>/dev/null | sed -n 's/.*Overall exposure level for amane-relayd.service: \([0-9.]*\).*/\1/p')
echo "# systemd-analyze security exposure: $exposure"
check "exposure $exposure is 1.5 or lower" "awk -v e='$exposure' 'BEGIN { exit !(e != \"\" && e <= 1.5) }'"
check "the unit allows no core dump and enough descriptors" "grep -qx 'LimitCORE=0' Deploy/amane-relayd.service && grep -qx 'LimitNOFILE=65536' Deploy/amane-relayd.service"
check "the unit bounds the relay's memory, throttling before it stops it, and never swaps it" \
    "grep -qx 'MemoryHigh=1G' Deploy/amane-relayd.service && grep -qx 'MemoryMax=1536M' Deploy/amane-relayd.service && grep -qx 'MemorySwapMax=0' Deploy/amane-relayd.service"

echo "# sysusers and tmpfiles, applied to a scratch root"
sysroot="$work/sysroot"
mkdir -p "$sysroot/etc"
check "sysusers creates the amane-relay system user" "systemd-sysusers --root='$sysroot' - < Deploy/amane-relay.sysusers >/dev/null 2>&1 && grep -q '^amane-relay:.*:/usr/sbin/nologin' '$sysroot/etc/passwd'"
check "tmpfiles creates private state and backup folders" "systemd-tmpfiles --create --root='$sysroot' - < Deploy/amane-relay.tmpfiles >/dev/null 2>&1 && [ \$(stat -c %a '$sysroot/var/lib/amane-relay') = 700 ] && [ \$(stat -c %a '$sysroot/var/backups/amane-relay') = 700 ]"

echo "# make install into a DESTDIR"
make -s install DESTDIR="$work/dest" >"$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
for file in usr/local/bin/amane-relayd usr/local/bin/amane usr/local/lib/systemd/system/amane-relayd.service \
    usr/local/lib/systemd/system/amane-relayd-backup.service usr/local/lib/systemd/system/amane-relayd-backup.timer \
    usr/local/lib/sysusers.d/amane-relay.conf usr/local/lib/tmpfiles.d/amane-relay.conf etc/amane-relay/amane-relayd.yaml \
    usr/local/share/amane-relay/seeds/taxonomy.yaml usr/local/share/amane-relay/seeds/policy.yaml usr/local/share/doc/amane-relay/README.md \
    usr/local/share/man/man1/amane.1 usr/local/share/man/man8/amane-relayd.8 usr/local/share/bash-completion/completions/amane \
    usr/local/share/zsh/site-functions/_amane usr/local/share/fish/vendor_completions.d/amane.fish; do
    check "installed $file" "[ -s '$work/dest/$file' ]"
done
check "the binaries are executable" "[ -x '$work/dest/usr/local/bin/amane-relayd' ] && [ -x '$work/dest/usr/local/bin/amane' ]"
check "the bash completion completes subcommands" "grep -q 'inbox' '$work/dest/usr/local/share/bash-completion/completions/amane'"
echo "edited by the operator" >> "$work/dest/etc/amane-relay/amane-relayd.yaml"
make -s install DESTDIR="$work/dest" >/dev/null 2>&1
check "install never overwrites an existing configuration" "grep -q 'edited by the operator' '$work/dest/etc/amane-relay/amane-relayd.yaml'"
mkdir -p "$work/dest/var/lib/amane-relay" && echo data > "$work/dest/var/lib/amane-relay/relay.sqlite"
make -s uninstall DESTDIR="$work/dest" >/dev/null 2>&1
check "uninstall removes the binaries and units" "[ ! -e '$work/dest/usr/local/bin/amane-relayd' ] && [ ! -e '$work/dest/usr/local/lib/systemd/system/amane-relayd.service' ]"
check "uninstall keeps the configuration and the data" "[ -s '$work/dest/etc/amane-relay/amane-relayd.yaml' ] && [ -s '$work/dest/var/lib/amane-relay/relay.sqlite' ]"

echo "# make install into a real prefix, then systemd-analyze verify"
prefix="$work/prefix"
make -s install PREFIX="$prefix/usr" SYSCONFDIR="$prefix/etc" >/dev/null 2>&1
for unit in "$prefix"/usr/lib/systemd/system/*; do
    out=$(systemd-analyze verify "$unit" 2>&1 || true)
    check "systemd-analyze verify $(basename "$unit") is clean" "[ -z \"\$out\" ]"
    [ -z "$out" ] || echo "$out"
done
check "units point at the installed binary" "grep -q 'ExecStart=$prefix/usr/bin/amane-relayd' '$prefix/usr/lib/systemd/system/amane-relayd.service'"
check "tmpfiles makes the configuration folder where SYSCONFDIR says" "grep -q '^d $prefix/etc/amane-relay ' '$prefix/usr/lib/tmpfiles.d/amane-relay.conf'"

echo "# the installed daemon, as the unit runs it"
bin="$prefix/usr/bin"
state="$work/state"
as_service() { setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all "$@"; }
mkdir -p "$state" "$work/people" "$work/backups" "$work/restored"
chown 65534:65534 "$state" "$work/backups" "$work/restored" "$work/people"
chmod 0755 "$work"
export AMANE_SEEDS_DIRECTORY="$prefix/usr/share/amane-relay/seeds"
as_service "$bin/amane-relayd" init --data-dir "$state" --hostname localhost --hostname 127.0.0.1 >/dev/null
check "init made the CA key with mode 0600" "[ \$(stat -c %a '$state/pki/ca-key.pem') = 600 ]"

person() {  # NAME ROLE: keygen on the person's side, enrollment by the admin, a profile
    local name=$1 role=$2 home="$work/people/$1"
    mkdir -p "$home" && chown 65534:65534 "$home"
    (umask 077 && printf 'passphrase of %s, long enough\n' "$name" > "$work/people/$name.pass")
    AMANE_HOME="$home" "$bin/amane" keygen --passphrase-file "$work/people/$name.pass" --json > "$work/people/$name.key.json"
    local key
    key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["publicKey"])' "$work/people/$name.key.json")
    as_service "$bin/amane-relayd" admin "enroll-$role" "$name" --sealing-key "$key" --out "$home/tls" --data-dir "$state" >/dev/null
}
person kiosk-1 gateway
person amina responder

mkdir -p "$work/credentials" && cp "$state/pki/server-key.pem" "$work/credentials/tls-privateKey"
chown -R 65534:65534 "$work/credentials" && chmod 0400 "$work/credentials/tls-privateKey"
mkdir -p "$work/notify" && chmod 0777 "$work/notify"
python3 - "$work/notify/socket" "$work/notify/log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1])
import os; os.chmod(sys.argv[1], 0o777)
with open(sys.argv[2], "a", buffering=1) as log:
    log.write("listening\n")
    while True:
        log.write(s.recv(4096).decode() + "\n")
PY
pids+=($!)
disown
wait_for() {  # CONDITION: polls for up to 30 s
    for _ in $(seq 1 300); do eval "$1" && return 0; sleep 0.1; done
    return 1
}
wait_for "grep -q listening '$work/notify/log' 2>/dev/null"

start_daemon() {  # DATA_DIR OUTPUT [LOG_LEVEL]: starts the installed daemon as the unit would, prints its port
    local data=$1 out=$2 level=${3:-}
    setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all env CREDENTIALS_DIRECTORY="$work/credentials" NOTIFY_SOCKET="$work/notify/socket" WATCHDOG_USEC=2000000 \
        ${level:+AMANE_LOG_LEVEL=$level} \
        AMANE_SEEDS_DIRECTORY="$AMANE_SEEDS_DIRECTORY" AMANE_TLS_CERTIFICATE_FILE="$data/pki/server-cert.pem" \
        AMANE_TLS_CA_FILE="$data/pki/ca-cert.pem" AMANE_TLS_KEY_FILE=/nonexistent/key.pem \
        "$bin/amane-relayd" serve --config "$prefix/etc/amane-relay/amane-relayd.yaml" --data-dir "$data" \
        --listen 127.0.0.1:0 --ops-listen 127.0.0.1:0 >"$out" 2>"$out.log" &
    echo $! >> "$work/daemon.pids"
    wait_for "grep -q 'listening on port' '$out' 2>/dev/null" || true
    sed -n 's/.*listening on port \([0-9]*\),.*/\1/p' "$out"
}
profile() {  # NAME PORT
    cat > "$work/people/$1/config.yaml" <<YAML
relay: https://127.0.0.1:$2
ca: $state/pki/ca-cert.pem
certificate: tls/$1-cert.pem
key: tls/$1-key.pem
passphraseFile: $work/people/$1.pass
YAML
}
port=$(start_daemon "$state" "$work/daemon1.out")
check "the installed daemon started as an unprivileged user, key from the credential" "[ -n '$port' ]"
# A process that is not dumpable has its /proc files owned by root: no core, no reading its memory as its own user.
daemon_pid=$(tail -1 "$work/daemon.pids")
check "the daemon runs as 65534 and is not dumpable" "awk '/^Uid:/ { exit \$2 != 65534 }' /proc/$daemon_pid/status && [ \"\$(stat -c %u /proc/$daemon_pid/status)\" = 0 ]"
check "systemd heard READY=1" "wait_for \"grep -q 'READY=1' '$work/notify/log'\""
check "systemd hears WATCHDOG=1" "wait_for \"grep -q 'WATCHDOG=1' '$work/notify/log'\""
check "the daemon logs JSON as configured, every line" \
    "python3 -c 'import json, sys; lines = [l for l in open(sys.argv[1]) if l.strip()]; [json.loads(l) for l in lines]; sys.exit(not lines)' '$work/daemon1.out.log'"
profile kiosk-1 "$port"
profile amina "$port"
check "the responder creates the first epoch" "AMANE_HOME='$work/people/amina' '$bin/amane' rotate >/dev/null"
demo=$(ls "$AMANE_SEEDS_DIRECTORY"/demo/*.json | head -1)
id=$(AMANE_HOME="$work/people/kiosk-1" "$bin/amane" submit "$demo" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
check "a gateway submits to the installed daemon" "[ -n '$id' ]"
canary="CANARY-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); d["content"]["narrative"] = "he said: " + sys.argv[2]; json.dump(d, open(sys.argv[3], "w"))' \
    "$demo" "$canary" "$work/canary.json"
check "a disclosure holding a canary is taken" "AMANE_HOME='$work/people/kiosk-1' '$bin/amane' submit '$work/canary.json' >/dev/null"
check "a backup is taken while it runs" "as_service env AMANE_SEEDS_DIRECTORY='$AMANE_SEEDS_DIRECTORY' '$bin/amane-relayd' backup --data-dir '$state' --to '$work/backups' --keep 2 >/dev/null"
backup=$(ls "$work/backups"/relay-*.sqlite | head -1)
check "the backup is private" "[ \$(stat -c %a '$backup') = 600 ]"
cp -r "$state/pki" "$work/restored/pki" && chown -R 65534:65534 "$work/restored"
check "the service user restores the backup into a new data directory" \
    "as_service env AMANE_SEEDS_DIRECTORY='$AMANE_SEEDS_DIRECTORY' '$bin/amane-relayd' restore '$backup' --data-dir '$work/restored' | grep -q '^Restored'"
check "the restored database belongs to the service user, mode 0600" "[ \"\$(stat -c '%u %a' '$work/restored/relay.sqlite')\" = '65534 600' ]"
check "the restored copy verifies" "'$bin/amane-relayd' admin audit verify --data-dir '$work/restored' | grep -q intact"
port2=$(start_daemon "$work/restored" "$work/daemon2.out" trace)
check "a second daemon starts on the restored copy" "[ -n '$port2' ]"
key_line=$(sed -n 2p "$work/credentials/tls-privateKey")
check "at trace level the log describes the services but holds no private key" \
    "grep -q TLSReloader '$work/daemon2.out.log' && ! grep -qF -e 'PRIVATE KEY' -e '$key_line' '$work/daemon2.out.log' '$work/daemon2.out'"
profile amina "$port2"
narrative=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["content"]["narrative"])' "$demo")
shown=$(AMANE_HOME="$work/people/amina" "$bin/amane" show "$id" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["entries"][0]["text"])')
check "the case reads back, decrypted, from the restored copy" "[ \"\$shown\" = \"\$narrative\" ]"
for pid in $(cat "$work/daemon.pids"); do kill -TERM "$pid" 2>/dev/null || true; done
for _ in $(seq 1 300); do
    alive=0
    for pid in $(cat "$work/daemon.pids"); do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
done
check "SIGTERM: both daemons exited" "[ \"\$alive\" = 0 ]"
check "SIGTERM: both stopped cleanly, their writes committed" \
    "grep -q 'stopped; every acknowledged write is committed' '$work/daemon1.out.log' && grep -q 'stopped; every acknowledged write is committed' '$work/daemon2.out.log'"
check "SIGTERM: systemd heard STOPPING=1" "wait_for \"grep -q 'STOPPING=1' '$work/notify/log'\""
absent() {  # NEEDLE PATH...: true only if grep read them all and found nothing (its status 1; 2 is an error, not an absence)
    local status=0
    grep -rqF -- "$1" "${@:2}" || status=$?
    [ "$status" -eq 1 ]
}
check "no plaintext in the data directories, the backups or the logs" \
    "absent \"\${narrative:0:40}\" '$state' '$work/restored' '$work/backups' && absent '$canary' '$state' '$work/restored' '$work/backups' '$work'/daemon*.out*"

echo "# $passed passed, $failed failed"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
