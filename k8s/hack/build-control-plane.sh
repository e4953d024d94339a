#!/usr/bin/env bash
# Builds the Kubernetes parts this project runs from their official Go modules into
# bin/ (git-ignored), because no binary downloads are possible here:
#   all   etcd + kube-apiserver (the chart tests' API server, as envtest would use)
#   node  everything `make cluster-up` runs: etcd, kube-apiserver, kube-controller-manager,
#         kube-scheduler, kubelet, kube-proxy, containerd + ctr + containerd-shim-runc-v2,
#         CoreDNS, metrics-server, Traefik
# Each comes from a throwaway module generated under bin/.build/ so that large dependency
# graphs never enter a project go.mod; the five Kubernetes commands share one module (and
# so one compile of their common packages). Rebuilds only when a binary is missing, when
# its pinned version changed (a stamp file next to it records it), or with FORCE=1. The
# Go build cache makes repeats a relink.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${BIN:-$ROOT/bin}"
KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.37.2}"
STAGING_VERSION="${STAGING_VERSION:-v0.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
METRICS_SERVER_VERSION="${METRICS_SERVER_VERSION:-v0.9.0}"
TRAEFIK_VERSION="${TRAEFIK_VERSION:-v3.7.13}"
KUBE_STAMP="$KUBERNETES_VERSION/$STAGING_VERSION/stamped"
# lego DNS providers whose SDK modules the Go module proxy does not serve (Traefik build).
TRAEFIK_UNAVAILABLE_DNS_PROVIDERS="alidns aliesa azion dnsimple edgedns edgeone huaweicloud oraclecloud regfish sakuracloud tencentcloud ucloud yandexcloud"
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0

mkdir -p "$BIN/.build"

# up_to_date BINARY VERSION: the binary exists and was built for VERSION.
up_to_date() {
  [[ -x "$1" && "${FORCE:-0}" != 1 && "$(cat "$1.version" 2>/dev/null)" == "$2" ]]
}

# fresh_module DIR NAME: an empty throwaway module in DIR (the current directory after).
fresh_module() {
  rm -rf "$1"; mkdir -p "$1"; cd "$1"
  go mod init "personscore.local/build/$2" >/dev/null 2>&1
}

# build_kube NAME...: the named commands of k8s.io/kubernetes, built in one go build.
build_kube() {
  local missing=() name
  for name in "$@"; do
    up_to_date "$BIN/$name" "$KUBE_STAMP" || missing+=("$name")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  local t0=$SECONDS
  echo ">> building ${missing[*]} $KUBERNETES_VERSION (staging modules $STAGING_VERSION)" >&2
  fresh_module "$BIN/.build/kubernetes" kubernetes
  go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null
  local kmod
  kmod="$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBERNETES_VERSION/go.mod"
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with
  # ./staging paths; a consumer must replace each with the published tag instead.
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$kmod" | while read -r m; do
    go mod edit -replace "$m=$m@$STAGING_VERSION"
  done
  local pkgs=()
  for name in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$name"); done
  go get "${pkgs[@]/%/@$KUBERNETES_VERSION}"
  # Stamp the version (as the Kubernetes release build does) so /version reports it:
  # Helm checks charts' kubeVersion against it.
  local v="${KUBERNETES_VERSION#v}"
  local major="${v%%.*}" minor
  minor="${v#*.}"; minor="${minor%%.*}"
  local pkg=k8s.io/component-base/version
  mkdir -p out
  go build -trimpath -ldflags "-X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" \
    -o out/ "${pkgs[@]}"
  for name in "${missing[@]}"; do
    mv "out/$name" "$BIN/$name"
    echo "$KUBE_STAMP" > "$BIN/$name.version"
  done
  echo ">> ${missing[*]} built in $((SECONDS - t0))s" >&2
}

build_etcd() {
  local out="$BIN/etcd"
  up_to_date "$out" "$ETCD_VERSION" && return 0
  local t0=$SECONDS
  echo ">> building etcd $ETCD_VERSION" >&2
  fresh_module "$BIN/.build/etcd" etcd
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

# containerd 2 (Kubernetes >= 1.36 needs it; Debian's 1.6 is too old), its CLI and the
# runc shim, without the snapshotters that need cgo or kernel features absent here.
build_containerd() {
  local names=(containerd ctr containerd-shim-runc-v2) name stale=0
  for name in "${names[@]}"; do up_to_date "$BIN/$name" "$CONTAINERD_VERSION" || stale=1; done
  [[ $stale == 0 ]] && return 0
  local t0=$SECONDS mod=github.com/containerd/containerd/v2
  echo ">> building containerd $CONTAINERD_VERSION" >&2
  fresh_module "$BIN/.build/containerd" containerd
  go get "$mod/cmd/containerd@$CONTAINERD_VERSION" "$mod/cmd/ctr@$CONTAINERD_VERSION" "$mod/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
  mkdir -p out
  go build -trimpath -tags "no_btrfs no_devmapper no_zfs no_aufs" \
    -ldflags "-X $mod/version.Version=$CONTAINERD_VERSION" \
    -o out/ "${names[@]/#/$mod/cmd/}"
  for name in "${names[@]}"; do
    mv "out/$name" "$BIN/$name"
    echo "$CONTAINERD_VERSION" > "$BIN/$name.version"
  done
  echo ">> containerd built in $((SECONDS - t0))s" >&2
}

# build_addon NAME VERSION PACKAGE [LDFLAGS]: one Go command into bin/NAME.
build_addon() {
  local name=$1 version=$2 pkg=$3 ldflags=${4:-}
  up_to_date "$BIN/$name" "$version" && return 0
  local t0=$SECONDS
  echo ">> building $name $version" >&2
  fresh_module "$BIN/.build/$name" "$name"
  if [[ $name == traefik ]]; then
    # Traefik requires github.com/traefik/traefik/dynamic/ext, a module kept inside its
    # repository (replaced by a relative path there, so absent from the module zip and
    # from the proxy): an extension point holding empty types, recreated here.
    mkdir -p ext
    printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24.0\n' > ext/go.mod
    cat > ext/ext.go <<'GO'
// Package ext stands in for Traefik's in-repository extension module (empty types).
package ext

// HTTP extends dynamic.HTTP (nothing here).
type HTTP struct{}

// Router extends dynamic.Router (nothing here).
type Router struct{}
GO
    go mod edit -replace github.com/traefik/traefik/dynamic/ext=./ext
    # Traefik's fork of gorilla/mux, as its go.mod replaces it.
    go mod edit -replace github.com/gorilla/mux=github.com/containous/mux@v0.0.0-20250523120546-41b6ec3aed59
    # Its fork of go-http-auth is not served by the module proxy: upstream v0.4.0 plus the
    # two functions Traefik calls that only the fork has: CheckSecret (upstream's own
    # password comparison, exported) and a digest challenge with stale=true (upstream's
    # CheckAuth never reports a stale nonce, so Traefik never reaches it).
    local auth=github.com/abbot/go-http-auth
    go mod download -json "$auth@v0.4.0" >/dev/null
    cp -r "$(go env GOMODCACHE)/$auth@v0.4.0" go-http-auth
    chmod -R u+w go-http-auth
    [[ -f go-http-auth/go.mod ]] || printf 'module %s\n\ngo 1.21\n' "$auth" > go-http-auth/go.mod
    cat > go-http-auth/stale.go <<'GO'
package auth

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// CheckSecret reports whether password matches secret (an htpasswd entry's hash),
// with the comparison BasicAuth.CheckAuth uses.
func CheckSecret(password, secret string) bool {
	compare := compareFuncs[0].compare
	for _, cmp := range compareFuncs[1:] {
		if strings.HasPrefix(secret, cmp.prefix) {
			compare = cmp.compare
			break
		}
	}
	return compare([]byte(secret), []byte(password)) == nil
}

// RequireAuthStale answers with a new digest challenge marked stale=true.
func (a *DigestAuth) RequireAuthStale(w http.ResponseWriter, r *http.Request) {
	nonce := RandomKey()
	a.clients[nonce] = &digest_client{nc: 0, last_seen: time.Now().UnixNano()}
	w.Header().Set(contentType, a.Headers.V().UnauthContentType)
	w.Header().Set(a.Headers.V().Authenticate,
		fmt.Sprintf(`Digest realm="%s", nonce="%s", opaque="%s", algorithm="MD5", qop="auth", stale=true`,
			a.Realm, nonce, a.Opaque))
	w.WriteHeader(a.Headers.V().UnauthCode)
	w.Write([]byte(a.Headers.V().UnauthResponse))
}
GO
    go mod edit -replace "$auth=./go-http-auth"
    go mod edit -exclude github.com/tencentcloud/tencentcloud-sdk-go@v3.0.83+incompatible
    # The ACME library registers every DNS provider; the SDKs of these are not served by
    # the module proxy. A copy of the library without them (ACME DNS challenges through
    # these providers are unavailable in this build; the node serves plain HTTP).
    local lego=github.com/go-acme/lego/v5 legov tmod
    go mod download -json "github.com/traefik/traefik/v3@$version" >/dev/null
    tmod="$(go env GOMODCACHE)/github.com/traefik/traefik/v3@$version/go.mod"
    legov="$(awk -v m="$lego" '$1 == m {print $2}' "$tmod")"
    go mod download -json "$lego@$legov" >/dev/null
    cp -r "$(go env GOMODCACHE)/$lego@$legov" lego
    chmod -R u+w lego
    local p reg=lego/providers/dns/zz_gen_dns_providers.go
    for p in $TRAEFIK_UNAVAILABLE_DNS_PROVIDERS; do
      sed -i "\#\"$lego/providers/dns/$p\"#d" "$reg"
      # the case of the switch ("case \"name\"[, ...]:" then "return $p.NewDNSProvider...")
      sed -i "/^\tcase .*:\$/{N;/\n\t\treturn $p\./d}" "$reg"
    done
    go mod edit -replace "$lego=./lego"
  fi
  go get "$pkg@$version"
  go build -trimpath -ldflags "$ldflags" -o "$BIN/$name.tmp" "$pkg"
  mv "$BIN/$name.tmp" "$BIN/$name"
  echo "$version" > "$BIN/$name.version"
  echo ">> $name built in $((SECONDS - t0))s" >&2
}

build_coredns() { build_addon coredns "$COREDNS_VERSION" github.com/coredns/coredns; }
build_metrics_server() {
  build_addon metrics-server "$METRICS_SERVER_VERSION" sigs.k8s.io/metrics-server/cmd/metrics-server \
    "-X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION"
}
build_traefik() {
  build_addon traefik "$TRAEFIK_VERSION" github.com/traefik/traefik/v3/cmd/traefik \
    "-X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION"
}
build_addons() { build_coredns; build_metrics_server; build_traefik; }

case "${1:-all}" in
  kube-apiserver) build_kube kube-apiserver ;;
  etcd) build_etcd ;;
  all) build_etcd; build_kube kube-apiserver ;;
  kubernetes) build_kube kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy ;;
  containerd) build_containerd ;;
  addons) build_addons ;;
  coredns) build_coredns ;;
  metrics-server) build_metrics_server ;;
  traefik) build_traefik ;;
  node)
    build_etcd
    build_kube kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
    build_containerd
    build_addons
    ;;
  *) echo "usage: $0 [all|node|etcd|kube-apiserver|kubernetes|containerd|addons|coredns|metrics-server|traefik]" >&2; exit 2 ;;
esac
