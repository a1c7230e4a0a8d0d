#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the captured 4.9.8 frames in remoting/tests/fixtures/
# (RMQ_FIXTURES overrides the directory). Nothing is committed: the seeds are cut at run time by
# rmq-remoting's example `fuzz_seeds`, with the crate's own decoders; its doc comment lists
# what each target gets.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
fixtures="${RMQ_FIXTURES:-$root/remoting/tests/fixtures}"
if [[ ! -f "$fixtures/index.json" ]]; then
  echo "seed.sh: no fixtures at $fixtures (set RMQ_FIXTURES)" >&2
  exit 1
fi
# Built in the main workspace (fuzz/ is its own workspace, built by cargo-fuzz).
cd "$root"
exec cargo run -q -p rmq-remoting --example fuzz_seeds -- "$fixtures" "$here/corpus"
