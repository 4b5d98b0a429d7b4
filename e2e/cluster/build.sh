#!/usr/bin/env bash
# Build the test-cluster binary for one or all pinned Kubernetes releases.
#   e2e/cluster/build.sh            # 1.35, 1.36 and 1.37
#   e2e/cluster/build.sh 1.35       # only 1.35
#   e2e/cluster/build.sh test 1.37  # run the smoke test against 1.37 (all three if omitted)
# Binaries: e2e/cluster/bin/podtls-testcluster-<release>. Go's module and
# build caches (GOMODCACHE, GOCACHE) live outside the clone, so re-runs are
# incremental. Builds run under `nice` so they leave room for other work.
set -euo pipefail
cd "$(dirname "$0")"

version_of() {
  case "$1" in
    1.35) echo v1.35.4 ;;
    1.36) echo v1.36.3 ;;
    1.37) echo v1.37.2 ;;
    *) echo "unknown release $1 (want 1.35, 1.36 or 1.37)" >&2; exit 2 ;;
  esac
}

# 1.35 uses go.mod (no tags); 1.3x uses go.1.3x.mod and the k813x tag.
mod_flags() {
  if [[ "$1" != 1.35 ]]; then echo "-modfile=go.$1.mod -tags=k8s${1/./}"; fi
}

# What hack/lib/version.sh stamps into release binaries; without it /version
# reports v0.0.0-master and kubectl cannot parse it.
ld_flags() {
  local v minor x=""
  v=$(version_of "$1"); minor=${v#v1.}; minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  echo "-s -w$x"
}

if [[ "${1:-}" == test ]]; then
  shift
  for r in ${@:-1.35 1.36 1.37}; do
    # shellcheck disable=SC2046
    nice -n 15 go test -count=1 $(mod_flags "$r") -ldflags="$(ld_flags "$r")" ./...
  done
  exit 0
fi

mkdir -p bin
for r in ${@:-1.35 1.36 1.37}; do
  start=$(date +%s)
  # shellcheck disable=SC2046
  nice -n 15 go build $(mod_flags "$r") -ldflags="$(ld_flags "$r")" -o "bin/podtls-testcluster-$r" .
  echo "built bin/podtls-testcluster-$r in $(( $(date +%s) - start ))s"
done
