#!/usr/bin/env bash
# Builds kube-apiserver and etcd from their official Go modules into bin/ (git-ignored),
# the same binaries envtest downloads, but built here because no binary downloads are
# possible. Each binary is built from a throwaway module generated under bin/.build/ so
# that the large k8s.io/kubernetes dependency graph never enters k8s/test's go.mod.
# Rebuilds only when a binary is missing, when its pinned version changed (a stamp file
# next to it records the version), or with FORCE=1. The Go build cache makes repeats fast.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${BIN:-$ROOT/bin}"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.37.2}"
STAGING_VERSION="${STAGING_VERSION:-v0.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0

mkdir -p "$BIN/.build"

# up_to_date BINARY VERSION: the binary exists and was built for VERSION.
up_to_date() {
  [[ -x "$1" && "${FORCE:-0}" != 1 && "$(cat "$1.version" 2>/dev/null)" == "$2" ]]
}

build_apiserver() {
  local out="$BIN/kube-apiserver"
  up_to_date "$out" "$KUBERNETES_VERSION/$STAGING_VERSION/stamped" && return 0
  local dir="$BIN/.build/kube-apiserver"
  rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
  local t0=$SECONDS
  echo ">> building kube-apiserver $KUBERNETES_VERSION (staging modules $STAGING_VERSION)" >&2
  go mod init personscore.local/build/kube-apiserver >/dev/null 2>&1
  go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null
  local kmod
  kmod="$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBERNETES_VERSION/go.mod"
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with
  # ./staging paths; a consumer must replace each with the published tag instead.
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$kmod" | while read -r m; do
    go mod edit -replace "$m=$m@$STAGING_VERSION"
  done
  go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION"
  # Stamp the version (as the Kubernetes release build does) so /version reports it:
  # Helm checks charts' kubeVersion against it.
  local v="${KUBERNETES_VERSION#v}"
  local major="${v%%.*}" minor
  minor="${v#*.}"; minor="${minor%%.*}"
  local pkg=k8s.io/component-base/version
  go build -trimpath -ldflags "-X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" \
    -o "$out.tmp" k8s.io/kubernetes/cmd/kube-apiserver
  mv "$out.tmp" "$out"
  echo "$KUBERNETES_VERSION/$STAGING_VERSION/stamped" > "$out.version"
  echo ">> kube-apiserver built in $((SECONDS - t0))s" >&2
}

build_etcd() {
  local out="$BIN/etcd"
  up_to_date "$out" "$ETCD_VERSION" && return 0
  local dir="$BIN/.build/etcd"
  rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
  local t0=$SECONDS
  echo ">> building etcd $ETCD_VERSION" >&2
  go mod init personscore.local/build/etcd >/dev/null 2>&1
  cat > main.go <<'GO'
// Command etcd is the etcd server entry point from go.etcd.io/etcd/server/v3.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go mod tidy
  go build -trimpath -o "$out.tmp" .
  mv "$out.tmp" "$out"
  echo "$ETCD_VERSION" > "$out.version"
  echo ">> etcd built in $((SECONDS - t0))s" >&2
}

case "${1:-all}" in
  kube-apiserver) build_apiserver ;;
  etcd) build_etcd ;;
  all) build_etcd; build_apiserver ;;
  *) echo "usage: $0 [all|etcd|kube-apiserver]" >&2; exit 2 ;;
esac
