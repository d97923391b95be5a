#!/usr/bin/env bash
# A/B of builds of the native client (bench/NOTES.md): alternates the given snapshots
# ROUNDS times on one load and prints one JSON line per run.
#
#   bench/ab.sh ROUNDS COUNT BYTES FRAGMENTS DIR_A DIR_B ...
#
# A snapshot is a directory holding index.js, native.js, emulator.js, compat.js and
# feishu-transport.linux-x64-gnu.node of one build, with node_modules linked to the
# repo's: the client loads it through BENCH_NATIVE_MODULE. Make one after a build with
#   mkdir -p /tmp/v && cp index.js native.js emulator.js compat.js *.node /tmp/v/ \
#     && ln -s "$PWD/node_modules" /tmp/v/node_modules
# IN_FLIGHT (256) and WARMUP (2000) can be set in the environment.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rounds=$1 count=$2 bytes=$3 frags=$4
shift 4
for r in $(seq 1 "$rounds"); do
  for dir in "$@"; do
    out=$(BENCH_NATIVE_MODULE="$dir/index.js" node "$here/profile.mjs" --client native --count "$count" \
      --bytes "$bytes" --fragments "$frags" --in-flight "${IN_FLIGHT:-256}" --warmup "${WARMUP:-2000}" | tail -1)
    echo "$r $(basename "$dir") $out"
  done
done
