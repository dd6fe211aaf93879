#!/usr/bin/env bash
# Fuzzes the decoders (JSON, Extended JSON, CSV, Protobuf) and the pipeline-file parser for a
# fixed time each: no panic, no hang, every record a row or a quarantined reject with a reason
# (the checks are in fuzz/src/lib.rs). Not part of CI; run it after touching a decoder.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, every target)
# Installs Rust nightly and cargo-fuzz if missing. The corpus grows across runs under
# ~/.cache/quickchat-etl/fuzz/corpus/; seeds come from generated data and fuzz/seeds/ (known
# bad input, committed). A crash or hang is saved under ~/.cache/quickchat-etl/fuzz/artifacts/
# and fails the script: add the input to fuzz/seeds/<target>/ and a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
cache=${QUICKCHAT_CACHE:-$HOME/.cache/quickchat-etl}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(json_records extended_json_lines csv_file protobuf_records pipeline_file dashboard_file)

scripts/install-deps.sh fuzz
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
fuzz_target_dir=$cache/fuzz-target
# A debug build without AddressSanitizer: the code under test is safe Rust, so the fuzzers look
# for panics, hangs and lost records; a debug build of the DataFusion stack compiles in half
# the time of a release one.
fuzz=(cargo +nightly fuzz)
fuzz_flags=(--dev --sanitizer none --target-dir "$fuzz_target_dir")

corpus=$cache/fuzz/corpus
if [ ! -e "$corpus/.seeded" ]; then
  echo "writing the seed corpus from generated data" >&2
  cargo build --locked --quiet
  generated=$(mktemp -d)
  "$CARGO_TARGET_DIR/debug/quickchat-etl" generate --out "$generated" --users 40 --days 2 >&2
  "$CARGO_TARGET_DIR/debug/quickchat-etl" generate --stream clickstream-analytics --events 400 --out "$generated" >&2
  "$CARGO_TARGET_DIR/debug/quickchat-etl" generate --stream chat-analytics --events 300 --out "$generated" >&2
  python3 scripts/fuzz-seeds.py "$generated" "$corpus"
  rm -rf "$generated"
  touch "$corpus/.seeded"
fi

echo "building the fuzz targets (the first build takes ~30 minutes)" >&2
(cd fuzz && "${fuzz[@]}" build "${fuzz_flags[@]}") >&2
failed=()
for target in "${targets[@]}"; do
  artifacts=$cache/fuzz/artifacts/$target
  mkdir -p "$artifacts" "$corpus/$target"
  echo "== $target: $seconds s" >&2
  log=$cache/fuzz/$target.log
  if (cd fuzz && "${fuzz[@]}" run "${fuzz_flags[@]}" "$target" "$corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix="$artifacts/") >"$log" 2>&1; then
    grep -E '^Done [0-9]+ runs|stat::number_of_executed_units|stat::new_units_added' "$log" | sed "s/^/$target: /" || true
    echo "$target: corpus $(find "$corpus/$target" -type f | wc -l) inputs, no finding"
  else
    echo "$target: FOUND A PROBLEM (log: $log; inputs under $artifacts):" >&2
    grep -E -A1 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -n 6 >&2 || true
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "findings in: ${failed[*]}" >&2
  exit 1
fi
