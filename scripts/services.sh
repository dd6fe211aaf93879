#!/usr/bin/env bash
# Starts (or finds already running) the services the tests talk to, and prints `export` lines
# for their addresses:
#   eval "$(scripts/services.sh start)"
#   scripts/services.sh stop          stops what this script started
# MariaDB: an existing server on 127.0.0.1:3306 is used (root, empty password), else the local
# mariadbd is started. S3: moto's server on 127.0.0.1:${QUICKCHAT_S3_PORT:-5999}, with the test bucket.
# Kafka: a broker already on 127.0.0.1:${QUICKCHAT_KAFKA_PORT:-9092} is used, else tansu is started
# there (in-memory storage); the topics of the shipped streaming pipelines are created.
set -euo pipefail
state=${QUICKCHAT_SERVICES_DIR:-${TMPDIR:-/tmp}/quickchat-etl-services}
s3_port=${QUICKCHAT_S3_PORT:-5999}
kafka_port=${QUICKCHAT_KAFKA_PORT:-9092}
topics=(clickstream transactions chat-stream interactions alerts)
bucket=quickchat-it
mkdir -p "$state"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
  for _ in $(seq 1 100); do listening "$1" && return 0; sleep 0.2; done
  echo "nothing is listening on 127.0.0.1:$1 after 20 s; see $state/*.log" >&2
  return 1
}

start_mariadb() {
  if [ -n "${QUICKCHAT_TEST_MYSQL_URL:-}" ] || listening 3306; then return; fi
  local server
  server=$(command -v mariadbd || command -v mysqld || true)
  if [ -z "$server" ]; then
    echo "no MariaDB/MySQL server: run scripts/install-deps.sh test" >&2
    return 1
  fi
  echo "starting $server" >&2
  start-stop-daemon --start --oknodo --background --make-pidfile --pidfile "$state/mariadb.pid" \
    --exec "$server" -- --user=root >"$state/mariadb.log" 2>&1
  wait_for_port 3306
}

start_s3() {
  if ! listening "$s3_port"; then
    echo "starting moto_server on 127.0.0.1:$s3_port" >&2
    nohup moto_server -H 127.0.0.1 -p "$s3_port" >"$state/moto.log" 2>&1 &
    echo $! >"$state/moto.pid"
    wait_for_port "$s3_port"
  fi
  python3 - "$s3_port" "$bucket" <<'PY'
import sys, urllib.request, urllib.error
port, bucket = sys.argv[1], sys.argv[2]
try:
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/{bucket}", method="PUT"))
except urllib.error.HTTPError as e:
    if e.code != 409:  # already exists
        raise
PY
}

start_kafka() {
  local tansu
  tansu=$(command -v tansu || echo "$HOME/.cargo/bin/tansu")
  if ! listening "$kafka_port"; then
    if [ ! -x "$tansu" ]; then
      echo "no Kafka broker on 127.0.0.1:$kafka_port and no tansu: run scripts/install-deps.sh test" >&2
      return 1
    fi
    echo "starting tansu on 127.0.0.1:$kafka_port" >&2
    nohup "$tansu" broker --listener-url "tcp://127.0.0.1:$kafka_port" \
      --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine memory://tansu/ \
      >"$state/tansu.log" 2>&1 &
    echo $! >"$state/tansu.pid"
    wait_for_port "$kafka_port"
  fi
  if [ -x "$tansu" ]; then
    local existing
    existing=$("$tansu" topic list --broker "tcp://127.0.0.1:$kafka_port" 2>/dev/null || true)
    for topic in "${topics[@]}"; do
      grep -q "\"$topic\"\|^$topic\$" <<<"$existing" \
        || "$tansu" topic create "$topic" --partitions 3 --broker "tcp://127.0.0.1:$kafka_port" >/dev/null 2>&1 \
        || true
    done
  fi
}

case "${1:-start}" in
  start)
    start_mariadb
    start_s3
    start_kafka
    echo "export QUICKCHAT_TEST_MYSQL_URL=${QUICKCHAT_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306}"
    echo "export QUICKCHAT_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port"
    echo "export QUICKCHAT_TEST_S3_BUCKET=$bucket"
    echo "export QUICKCHAT_TEST_KAFKA_BROKERS=127.0.0.1:$kafka_port"
    ;;
  stop)
    for pidfile in "$state"/*.pid; do
      [ -e "$pidfile" ] || continue
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    done
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
