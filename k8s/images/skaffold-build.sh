#!/usr/bin/env bash
# Custom build step of skaffold's local-node profile (skaffold.yaml): builds a service
# image without a container daemon, imports it into the local node's containerd and
# pushes it to the loopback registry that `make dev` runs (skaffold reads the image's
# digest there; the node never needs to pull it).
#   skaffold sets IMAGE (the reference to build) and PUSH_IMAGE.
#   CONTAINERD_ADDRESS: the node's containerd socket (see /work/wt/CLUSTER.md or
#   docs/KUBERNETES.md); CTR: its ctr binary (default: ctr on PATH).
# Usage: skaffold-build.sh person|score
set -euo pipefail
svc="$1"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${BIN:-$ROOT/bin}"
: "${IMAGE:?skaffold sets IMAGE}"
: "${CONTAINERD_ADDRESS:?set CONTAINERD_ADDRESS to the node containerd socket}"
CTR="${CTR:-ctr}"

[[ -x "$BIN/build-image" ]] || (cd "$ROOT/k8s/test" && go build -o "$BIN/build-image" ./cmd/build-image)
out="$BIN/skaffold-images/$svc.oci.tar"
"$BIN/build-image" -root "$ROOT" -service "$svc" -tag "$IMAGE" -oci-out "$out" -push
# --digests also names the image <repo>@<digest>, the form skaffold deploys (tag@digest).
"$CTR" --address "$CONTAINERD_ADDRESS" -n k8s.io images import --digests --local "$out" >/dev/null
echo "imported $IMAGE into the node's containerd ($CONTAINERD_ADDRESS)"
