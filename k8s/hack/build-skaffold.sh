#!/usr/bin/env bash
# Builds skaffold from its Go module into bin/skaffold (no binary downloads here).
# skaffold's go.mod pins some dependencies with `replace` lines, which a consumer module
# does not inherit: the throwaway module repeats them (read from the module's own go.mod)
# before `go get`. The binary is cached outside the clone, per version, in
# $PERSONSCORE_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/personscore)/skaffold/<version>;
# FORCE=1 rebuilds it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${BIN:-$ROOT/bin}"
SKAFFOLD_VERSION="${SKAFFOLD_VERSION:-v2.16.1}"
CACHE="${PERSONSCORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/personscore}"
MOD=github.com/GoogleContainerTools/skaffold/v2
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0

dir="$CACHE/skaffold/$SKAFFOLD_VERSION"
# One build at a time across clones (they share $CACHE; a second would delete the first's).
mkdir -p "$CACHE"
exec 9>"$CACHE/skaffold.lock"
flock 9
if [[ ! -x "$dir/skaffold" || "${FORCE:-0}" == 1 ]]; then
  rm -rf "$dir"; mkdir -p "$dir/module"; cd "$dir/module"
  t0=$SECONDS
  echo ">> building skaffold $SKAFFOLD_VERSION (module proxy)" >&2
  go mod init personscore.local/build/skaffold >/dev/null 2>&1
  moddir="$(go mod download -json "$MOD@$SKAFFOLD_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
  # Single-line `replace A => B vX` directives of skaffold's go.mod.
  sed -n 's#^replace \([^ ]*\) => \([^ ]*\) \([^ ]*\)$#\1=\2@\3#p' "$moddir/go.mod" | while read -r r; do
    go mod edit -replace "$r"
  done
  go get "$MOD/cmd/skaffold@$SKAFFOLD_VERSION"
  pkg=$MOD/pkg/skaffold/version
  # Tags and version stamps of skaffold's own release build (its Makefile).
  nice -n 10 go build -trimpath -tags "timetzdata osusergo netgo static_build release" \
    -ldflags "-s -w -X $pkg.version=$SKAFFOLD_VERSION -X $pkg.gitCommit=module-proxy -X $pkg.buildDate=unknown" \
    -o ../skaffold.tmp "$MOD/cmd/skaffold"
  mv ../skaffold.tmp ../skaffold
  echo ">> skaffold $SKAFFOLD_VERSION built in $((SECONDS - t0))s (cached in $dir)" >&2
fi
flock -u 9
mkdir -p "$BIN"
cmp -s "$dir/skaffold" "$BIN/skaffold" 2>/dev/null || install -m 0755 "$dir/skaffold" "$BIN/skaffold"
