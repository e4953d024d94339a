#!/usr/bin/env bash
# Builds skaffold from its Go module into bin/skaffold (no binary downloads here).
# skaffold's go.mod pins some dependencies with `replace` lines, which a consumer module
# does not inherit: the throwaway module under bin/.build/skaffold repeats them (read from
# the module's own go.mod) before `go get`. Rebuilds only when the binary is missing or
# was built for another version (stamp file), or with FORCE=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${BIN:-$ROOT/bin}"
SKAFFOLD_VERSION="${SKAFFOLD_VERSION:-v2.16.1}"
MOD=github.com/GoogleContainerTools/skaffold/v2
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0

out="$BIN/skaffold"
if [[ -x "$out" && "${FORCE:-0}" != 1 && "$(cat "$out.version" 2>/dev/null)" == "$SKAFFOLD_VERSION" ]]; then
  exit 0
fi
dir="$BIN/.build/skaffold"
rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
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
nice -n 19 go build -trimpath -tags "timetzdata osusergo netgo static_build release" \
  -ldflags "-s -w -X $pkg.version=$SKAFFOLD_VERSION -X $pkg.gitCommit=module-proxy -X $pkg.buildDate=unknown" \
  -o "$out.tmp" "$MOD/cmd/skaffold"
mv "$out.tmp" "$out"
echo "$SKAFFOLD_VERSION" > "$out.version"
echo ">> skaffold $SKAFFOLD_VERSION built in $((SECONDS - t0))s" >&2
