#!/usr/bin/env bash
# Installs what quickchat-etl needs on Debian or Ubuntu, skipping what is already there.
#   scripts/install-deps.sh build   a C toolchain, cmake and the libraries librdkafka is built with
#   scripts/install-deps.sh test    the above, plus MariaDB, protoc, tmux (to drive the SQL shell),
#                                   the moto S3 server (Python) and the tansu Kafka broker (Rust;
#                                   its first build takes ~20 minutes)
set -euo pipefail
what=${1:-test}

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(build-essential cmake pkg-config libcurl4-openssl-dev libsasl2-dev)
if [ "$what" = test ]; then
  packages+=(protobuf-compiler python3-pip tmux)
  command -v mariadbd >/dev/null 2>&1 || command -v mysqld >/dev/null 2>&1 || packages+=(mariadb-server)
fi
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "$what" = test ]; then
  if ! command -v moto_server >/dev/null 2>&1; then
    echo "installing the moto S3 server (pip)" >&2
    python3 -m pip install --quiet 'moto[server]' 2>/dev/null \
      || python3 -m pip install --quiet --break-system-packages 'moto[server]'
  fi
  if ! command -v tansu >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tansu" ]; then
    echo "installing the tansu Kafka broker (cargo install; ~20 minutes the first time)" >&2
    cargo install tansu --locked --features dynostore,postgres
  fi
fi
