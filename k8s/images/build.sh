#!/usr/bin/env bash
# make images: builds every image of images.env without a container daemon into
# bin/images/*.tar. Each step is cached: Go builds by the Go build cache, the operator
# binary and the RabbitMQ root filesystem in a machine-wide cache outside the clone
# ($PERSONSCORE_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/personscore) keyed by their
# inputs, and a tarball is rewritten only when its image changed.
# Usage: build.sh [person score localmongo http-check operator rabbitmq]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${BIN:-$ROOT/bin}"
OUT="$BIN/images"
CACHE="${PERSONSCORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/personscore}"
# shellcheck source=images.env
source "$ROOT/k8s/images/images.env"

step() { echo "==> $*" >&2; }
# lock NAME / unlock: one cache fill at a time across clones and processes (they share
# $CACHE; a second build of the same entry would delete the first one's work).
lock() { exec 9>"$CACHE/$1.lock"; flock 9; }
unlock() { flock -u 9; exec 9>&-; }
mkdir -p "$OUT" "$CACHE"
(cd "$ROOT/k8s/test" && go build -o "$BIN/build-image" ./cmd/build-image)
build_image() { "$BIN/build-image" -root "$ROOT" "$@"; }

service() { # person | score | localmongo
  local ref="$1"
  step "$2: $ref"
  build_image -service "$2" -tag "$ref" -out "$OUT/$2.tar"
}

http_check() {
  step "http-check: $HTTP_CHECK_IMAGE (helm test probe)"
  (cd "$ROOT/k8s/test" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/http-check" ./cmd/http-check)
  build_image -binary "$BIN/http-check" -name http-check -tag "$HTTP_CHECK_IMAGE" -out "$OUT/http-check.tar"
}

operator() {
  local v="$RABBITMQ_OPERATOR_VERSION"
  local dir="$CACHE/cluster-operator/$v"
  step "rabbitmq-cluster-operator: $RABBITMQ_OPERATOR_IMAGE from $RABBITMQ_OPERATOR_MODULE@$v"
  lock cluster-operator
  if [[ ! -x "$dir/manager" ]]; then
    local t0=$SECONDS
    rm -rf "$dir"; mkdir -p "$dir/module"
    (
      cd "$dir/module"
      export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
      go mod init personscore.local/build/cluster-operator >/dev/null 2>&1
      go get "$RABBITMQ_OPERATOR_MODULE/cmd@$v" 2>/dev/null
      # As the operator's Dockerfile: static, with the time zone database.
      nice -n 10 go build -trimpath -tags timetzdata -ldflags "-s -w" -o ../manager.tmp "$RABBITMQ_OPERATOR_MODULE/cmd"
    )
    mv "$dir/manager.tmp" "$dir/manager"
    echo "    go build in $((SECONDS - t0))s (cached in $dir)" >&2
  fi
  unlock
  build_image -binary "$dir/manager" -name manager -version "${v#v}" -port 8080 -port 8081 \
    -tag "$RABBITMQ_OPERATOR_IMAGE" -out "$OUT/rabbitmq-cluster-operator.tar"
}

rabbitmq() {
  # The root filesystem is keyed by what makes it: suite, mirror and the recipe.
  local key
  key="$(printf '%s %s %s' "$RABBITMQ_DEBIAN_SUITE" "$RABBITMQ_DEBIAN_MIRROR" "$(sha256sum < "$ROOT/k8s/images/rabbitmq-rootfs.sh")" | sha256sum | cut -c1-16)"
  local dir="$CACHE/rabbitmq/$key"
  step "rabbitmq: $RABBITMQ_IMAGE from Debian $RABBITMQ_DEBIAN_SUITE's rabbitmq-server"
  lock rabbitmq
  if [[ ! -f "$dir/rootfs.version" ]]; then
    local t0=$SECONDS
    rm -rf "$CACHE/rabbitmq"; mkdir -p "$dir"
    nice -n 10 "$ROOT/k8s/images/rabbitmq-rootfs.sh" "$dir/rootfs" "$RABBITMQ_DEBIAN_SUITE" "$RABBITMQ_DEBIAN_MIRROR"
    echo "    root filesystem in $((SECONDS - t0))s (cached in $dir)" >&2
  fi
  unlock
  # What the RabbitMQ Cluster Operator expects of the image: the server as the default
  # command, uid 999, bash, HOME=/var/lib/rabbitmq (the Erlang cookie), logs on stdout.
  # Its containers have a read-only root filesystem: RabbitMQ 3.10 writes its upgrade log
  # as a file (under RABBITMQ_LOG_BASE) even with RABBITMQ_LOGS=-, so it goes to stdout
  # too (RABBITMQ_UPGRADE_LOG=-), and any other file log lands in /var/lib/rabbitmq,
  # where the operator mounts a writable volume.
  build_image -rootfs "$dir/rootfs" -user 999:999 -cmd rabbitmq-server -workdir /var/lib/rabbitmq \
    -version "$(cat "$dir/rootfs.version")" \
    -env PATH=/usr/lib/rabbitmq/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    -env HOME=/var/lib/rabbitmq -env RABBITMQ_LOGS=- -env RABBITMQ_UPGRADE_LOG=- -env RABBITMQ_LOG_BASE=/var/lib/rabbitmq/log -env LANG=C.UTF-8 \
    -port 4369 -port 5672 -port 15672 -port 15692 -port 25672 \
    -tag "$RABBITMQ_IMAGE" -out "$OUT/rabbitmq.tar"
}

t0=$SECONDS
for what in "${@:-person score localmongo http-check operator rabbitmq}"; do
  for w in $what; do
    case "$w" in
      person) service "$PERSON_IMAGE" person ;;
      score) service "$SCORE_IMAGE" score ;;
      localmongo) service "$LOCALMONGO_IMAGE" localmongo ;;
      http-check) http_check ;;
      operator) operator ;;
      rabbitmq) rabbitmq ;;
      *) echo "unknown image $w (person score localmongo http-check operator rabbitmq)" >&2; exit 2 ;;
    esac
  done
done
echo "==> images in $OUT ($((SECONDS - t0))s)" >&2
