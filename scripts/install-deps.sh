#!/usr/bin/env bash
# Installs what quickchat-etl needs on Debian or Ubuntu, skipping what is already there.
#   scripts/install-deps.sh build   a C toolchain, cmake and the libraries librdkafka is built with
#   scripts/install-deps.sh test    the above, plus MariaDB, protoc, tmux (to drive the SQL shell),
#                                   Prometheus and promtool (the live UI's metrics), Chromium, Node.js and
#                                   the web UI's npm packages (browser tests), Java 17 and Maven, the Apache Kafka broker (its jars from Maven
#                                   Central), the MinIO S3 server and FerretDB (a MongoDB-wire server), both
#                                   built with Go at pinned versions, OpenSearch (its integration-test zip
#                                   from Maven Central), and
#                                   Apache Airflow in a virtual environment of its own (for the DAG test)
#   scripts/install-deps.sh fuzz    the build set, plus Rust nightly and cargo-fuzz (for scripts/fuzz.sh)
# Downloads are cached under ~/.cache/quickchat-etl/, so a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-test}
cache=${QUICKCHAT_CACHE:-$HOME/.cache/quickchat-etl}

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(build-essential cmake pkg-config libcurl4-openssl-dev libsasl2-dev libssl-dev)
if [ "$what" = test ]; then
  packages+=(protobuf-compiler python3-pip python3-venv tmux socat mariadb-server mariadb-client prometheus prometheus-pushgateway chromium)
  command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
  command -v java >/dev/null 2>&1 || packages+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || packages+=(maven)
  command -v unzip >/dev/null 2>&1 || packages+=(unzip)
  command -v go >/dev/null 2>&1 || packages+=(golang-go)
fi
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  sudo_if_needed apt-get update -qq
  # Debian's MariaDB package tries to start its server; without systemd that is refused
  # harmlessly, and scripts/services.sh starts its own.
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "$what" = test ]; then
  # MinIO's module proxy versions are commits (its RELEASE.* tags are not Go versions): this
  # one is the proxy's latest of 2026-02-12. One build, ~6 minutes; the binary is cached.
  minio_version=v0.0.0-20260212201848-7aac2a2c5b7c
  minio="$cache/bin/minio"
  if [ ! -x "$minio" ] || [ "$(cat "$cache/bin/minio.version" 2>/dev/null)" != "$minio_version" ]; then
    echo "installing MinIO $minio_version (go install, into $cache/bin; a few minutes, once)" >&2
    mkdir -p "$cache/bin"
    GOBIN="$cache/bin" GOFLAGS=-mod=mod go install "github.com/minio/minio@$minio_version" >&2
    echo "$minio_version" >"$cache/bin/minio.version"
  fi
  # FerretDB (a MongoDB-wire server; SQLite backend, so no PostgreSQL). Its `go install` binary
  # refuses to start without the version file its release build writes, so it is built from a
  # copy of the module's source with that file added. ~2 minutes, once.
  ferretdb_version=v1.24.2
  ferretdb="$cache/bin/ferretdb"
  if [ ! -x "$ferretdb" ] || [ "$(cat "$cache/bin/ferretdb.version" 2>/dev/null)" != "$ferretdb_version" ]; then
    echo "installing FerretDB $ferretdb_version (go build, into $cache/bin; a few minutes, once)" >&2
    source_dir=$(go mod download -json "github.com/FerretDB/FerretDB@$ferretdb_version" \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    rm -rf "$cache/src/ferretdb"
    mkdir -p "$cache/src" "$cache/bin"
    cp -r "$source_dir" "$cache/src/ferretdb"
    chmod -R u+w "$cache/src/ferretdb"
    echo "$ferretdb_version" >"$cache/src/ferretdb/build/version/version.txt"
    (cd "$cache/src/ferretdb" && GOFLAGS=-mod=mod go build -o "$ferretdb" ./cmd/ferretdb) >&2
    echo "$ferretdb_version" >"$cache/bin/ferretdb.version"
  fi
  kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)
  kafka_libs="$cache/kafka-$kafka_version/libs"
  if [ ! -e "$kafka_libs/.complete" ]; then
    echo "installing Apache Kafka $kafka_version (its jars from Maven Central, into $kafka_libs)" >&2
    rm -rf "$kafka_libs"
    mvn -q -B -Dstyle.color=never -f scripts/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory="$kafka_libs" >&2
    touch "$kafka_libs/.complete"
  fi
  # OpenSearch (the Elasticsearch sink's test server) from its integration-test zip.
  opensearch_version=$(sed -n 's:.*<opensearch.version>\(.*\)</opensearch.version>.*:\1:p' scripts/opensearch/pom.xml)
  opensearch_home="$cache/opensearch-$opensearch_version"
  if [ ! -e "$opensearch_home/.complete" ]; then
    echo "installing OpenSearch $opensearch_version (its integration-test zip from Maven Central, into $opensearch_home)" >&2
    rm -rf "$opensearch_home" "$cache/opensearch-zip"
    mvn -q -B -Dstyle.color=never -f scripts/opensearch/pom.xml dependency:copy-dependencies \
      -DoutputDirectory="$cache/opensearch-zip" >&2
    (cd "$cache" && unzip -q "opensearch-zip/opensearch-$opensearch_version.zip")
    rm -rf "$cache/opensearch-zip"
    touch "$opensearch_home/.complete"
  fi
  scripts/vendor-web.sh install
  airflow_venv="$cache/airflow-venv"
  if [ ! -e "$airflow_venv/.complete" ]; then
    echo "installing Apache Airflow into $airflow_venv (pip; a few minutes, once)" >&2
    rm -rf "$airflow_venv"
    python3 -m venv "$airflow_venv"
    "$airflow_venv/bin/pip" install --quiet --disable-pip-version-check \
      -c tests/airflow/constraints.txt apache-airflow
    touch "$airflow_venv/.complete"
  fi
fi

if [ "$what" = fuzz ]; then
  if ! rustup toolchain list | grep -q '^nightly'; then
    echo "installing Rust nightly (cargo fuzz needs it)" >&2
    rustup toolchain install nightly --profile minimal
  fi
  if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
  fi
fi
