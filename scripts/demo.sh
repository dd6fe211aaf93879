#!/usr/bin/env bash
# The README's first command: installs the build prerequisites if missing, builds the release
# binary and runs `quickchat-etl demo` (generated data into ./lake; no server needed).
# Extra arguments go to `demo` (e.g. `scripts/demo.sh --users 1000 --days 60`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
cargo run --release --locked -- demo "$@"
