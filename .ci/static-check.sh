#!/usr/bin/env bash
# The part of the container image that can fail without a container runtime: the
# binaries built the way kind/Dockerfile builds them (static glibc,
# `-C target-feature=+crt-static`, release, for the host target), checked to be static,
# then run in an empty root holding nothing but the binaries, an /etc/passwd with the
# distroless `nonroot` user (65532) and a test credential, as that user:
#   - `signer --help`, `demo-server --help`, `demo-client --help`, `podtls-agent --help`,
#     and `podtls-agent probe` (the injected sidecar's startupProbe) refusing an empty folder;
#   - demo-server serving TLS with the credential: curl from outside fetches /healthz,
#     demo-client from inside the root fetches it by name (resolved through /etc/hosts, as
#     in a pod: the static glibc's NSS `files` path) verifying the certificate;
#     demo-server stops on SIGTERM with exit code 0.
# Root: chroot --userspec. Not root: an unprivileged user namespace (unshare -r --root).
# Run from anywhere: `bash .ci/static-check.sh`; fails loudly on the first problem.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/podtls-ci-target}"
start=$SECONDS
fail() { echo "static-check: FAIL: $*" >&2; exit 1; }
for tool in readelf strip openssl curl chroot; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed"
done

# Exactly the Dockerfile's build (minus the Docker cache mounts).
target="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --locked --release --target "$target" -p signer -p demo-server -p demo-client -p podtls-agent
out="$CARGO_TARGET_DIR/$target/release"
built=$SECONDS

work="$(mktemp -d /tmp/podtls-static-check.XXXXXX)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -KILL "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The image's root: the binaries (stripped, as in the image) and /etc/passwd.
root="$work/root"
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/creds"
for b in signer demo-server demo-client podtls-agent; do
  if readelf -lW "$out/$b" | grep -q 'Requesting program interpreter'; then
    fail "$b has a program interpreter: not static"
  fi
  if readelf -dW "$out/$b" | grep -q '(NEEDED)'; then
    fail "$b needs shared libraries: $(readelf -dW "$out/$b" | grep '(NEEDED)' | tr -s ' ')"
  fi
  cp "$out/$b" "$root/usr/local/bin/$b"
  strip "$root/usr/local/bin/$b"
done
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
# A pod's /etc/hosts is kubelet's; the demo's server name resolves through it here.
printf '127.0.0.1 localhost\n127.0.0.1 server.static-check.svc\n' >"$root/etc/hosts"

# A test credential: ECDSA P-256 leaf for server.static-check.svc, self-issued.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=static-check -addext subjectAltName=DNS:server.static-check.svc \
  -addext basicConstraints=critical,CA:FALSE -addext keyUsage=critical,digitalSignature \
  -keyout "$root/creds/key.pem" -out "$root/creds/chain.pem" 2>/dev/null
chmod 0644 "$root/creds/"*.pem

# `exec`: run in a subshell (`$(...)`, `(...)`, `&`), the command replaces it, so a
# background job's $! is the binary's own pid (chroot and unshare exec it in turn).
in_root() {
  if [ "$(id -u)" = 0 ]; then
    exec chroot --userspec=65532:65532 "$root" "$@"
  else
    exec unshare --map-root-user --root="$root" "$@"
  fi
}

for b in signer demo-server demo-client podtls-agent; do
  help="$(in_root "/usr/local/bin/$b" --help)" || fail "$b --help failed in the empty root"
  grep -q 'Usage:' <<<"$help" || fail "$b --help printed no usage: $help"
done
echo "static-check: --help of signer, demo-server, demo-client, podtls-agent ran in the empty root"
if (in_root /usr/local/bin/podtls-agent probe --credential-folder=/creds) 2>/dev/null; then
  fail "podtls-agent probe passed on a folder without a credential bundle"
fi
echo "static-check: podtls-agent probe refused a folder without a credential bundle"

# Port 0: demo-server prints the addresses it bound (`LISTENING https=ADDR admin=ADDR`).
(in_root /usr/local/bin/demo-server --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --server-key /creds/key.pem --server-chain /creds/chain.pem --shutdown-grace 2s \
  >"$work/server.log" 2>&1) &
server_pid=$!

deadline=$((SECONDS + 30))
port=""
until [ -n "$port" ] && curl -sf --cacert "$root/creds/chain.pem" \
  --resolve "server.static-check.svc:$port:127.0.0.1" \
  "https://server.static-check.svc:$port/healthz" >"$work/healthz" 2>/dev/null; do
  kill -0 "$server_pid" 2>/dev/null || fail "demo-server exited: $(cat "$work/server.log")"
  [ "$SECONDS" -lt "$deadline" ] || fail "demo-server not serving within 30 s: $(cat "$work/server.log")"
  port="$(sed -n 's/^LISTENING https=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/server.log")"
  sleep 0.2
done
grep -q OK "$work/healthz" || fail "unexpected /healthz answer: $(cat "$work/healthz")"
echo "static-check: demo-server serves TLS from the empty root (curl: $(cat "$work/healthz"))"

(in_root /usr/local/bin/demo-client --fetch-url "https://server.static-check.svc:$port/healthz" \
  --server-trust-bundle /creds/chain.pem --count 1 --interval 100ms >"$work/client.log" 2>&1) \
  || fail "demo-client in the empty root could not fetch by name: $(cat "$work/client.log")"
grep -q '200' "$work/client.log" || fail "demo-client got no 200: $(cat "$work/client.log")"
echo "static-check: demo-client in the empty root resolved the name (/etc/hosts) and fetched: $(grep -m1 200 "$work/client.log")"

kill -TERM "$server_pid"
code=0
wait "$server_pid" || code=$?
server_pid=""
[ "$code" = 0 ] || fail "demo-server exited $code on SIGTERM: $(cat "$work/server.log")"
echo "static-check: demo-server stopped on SIGTERM with exit code 0"
echo "static-check: OK (build $((built - start)) s, checks $((SECONDS - built)) s)"
