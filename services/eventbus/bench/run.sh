#!/bin/sh
# Runs the event-library benchmarks ROUNDS times (each round runs every
# implementation once, so drift on a shared machine hits them alike) and
# compares them with benchstat. Usage: ./run.sh [ROUNDS] [MESSAGES]
set -eu
cd "$(dirname "$0")"
rounds=${1:-6}
msgs=${2:-20000}
out=${OUT:-bench.txt}
: >"$out"
i=0
while [ "$i" -lt "$rounds" ]; do
	BENCH_ROUND=$i go test -run '^$' -bench . -benchtime "${msgs}x" -count 1 | tee -a "$out"
	i=$((i + 1))
done
benchstat=${BENCHSTAT:-$(go env GOPATH)/bin/benchstat}
[ -x "$benchstat" ] || benchstat=../../../bin/benchstat
"$benchstat" -col '/impl@(raw raw-4ch eventbus watermill watermill-default raw-bare)' -row .name "$out"
