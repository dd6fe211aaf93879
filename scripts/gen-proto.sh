#!/usr/bin/env bash
# Compiles proto/*.proto into the descriptor sets quickchat-etl decodes Protobuf records with.
# The .desc files are committed, so building needs no protoc; run this after editing a .proto.
set -euo pipefail
cd "$(dirname "$0")/.."
for proto in proto/*.proto; do
  protoc --include_imports --proto_path=proto --descriptor_set_out="${proto%.proto}.desc" "$proto"
done
