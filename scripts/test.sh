#!/usr/bin/env bash
# The README's test command: installs what the tests need, starts MariaDB (unless one runs),
# MinIO (S3), FerretDB (MongoDB) and Apache Kafka, then runs every test. Extra arguments go to
# `cargo test` (e.g. `scripts/test.sh golden`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
eval "$(scripts/services.sh start)"
cargo test --locked "$@"
