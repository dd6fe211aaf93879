#!/usr/bin/env bash
# Starts (or finds already running) the services the tests talk to, and prints `export` lines
# for their addresses:
#   eval "$(scripts/services.sh start)"
#   scripts/services.sh start mariadb  starts only the services named (mariadb, s3, kafka, mongodb,
#                                      elasticsearch)
#   scripts/services.sh stop          stops what this script started, and waits until it ended
# QUICKCHAT_SERVICES_DIR and the port variables below give a second set of servers (the outage
# tests start their own MariaDB and Kafka this way, to stop and restart them).
# Every service listens on 127.0.0.1 only; run scripts/install-deps.sh test first.
# - MariaDB on ${QUICKCHAT_MYSQL_PORT:-3306}: a server already listening there is used (the test
#   user is created through its unix socket when we are root), else the local mariadbd is
#   started on a data folder of its own, with a certificate from the test CA made here (user
#   quickchat_tls may connect over TLS only). The tests connect as quickchat/quickchat.
#   QUICKCHAT_TEST_MYSQL_URL set beforehand overrides all of this.
# - S3 on ${QUICKCHAT_S3_PORT:-5999}: a server already listening there is used (with
#   QUICKCHAT_TEST_S3_ACCESS_KEY_ID / QUICKCHAT_TEST_S3_SECRET_ACCESS_KEY, if not ours), else
#   MinIO (single drive, on a data folder of its own) is started; the test bucket is created
#   either way (${QUICKCHAT_S3_BUCKET:-quickchat-it}; a SigV4-signed PUT: MinIO refuses unsigned
#   requests).
# - MongoDB on ${QUICKCHAT_MONGODB_PORT:-27017}: a server already listening there is used, else
#   FerretDB (the MongoDB wire protocol on SQLite files of its own) is started; ours also
#   listens with TLS (the test CA's certificate) on the port + 1.
# - Elasticsearch on ${QUICKCHAT_ELASTICSEARCH_PORT:-9200}: a server already answering there is used,
#   else OpenSearch (one node, no security plugin, 512 MB heap) is started on a data folder of
#   its own, as the user quickchat-search when we are root (OpenSearch refuses to run as root);
#   socat serves it over https (the test CA's certificate) on the port + 43.
# - Kafka on ${QUICKCHAT_KAFKA_PORT:-9092}: a broker already listening there is used, else
#   Apache Kafka (KRaft, one node) is started; the topics of the shipped streaming pipelines are
#   created either way. Ours also listens with SASL_SSL on the port + 2 (TLS with the test CA's
#   certificate, user quickchat with PLAIN or SCRAM-SHA-256) for the connection-security tests.
set -euo pipefail
cd "$(dirname "$0")/.."
state=${QUICKCHAT_SERVICES_DIR:-${TMPDIR:-/tmp}/quickchat-etl-services}
cache=${QUICKCHAT_CACHE:-$HOME/.cache/quickchat-etl}
mysql_port=${QUICKCHAT_MYSQL_PORT:-3306}
s3_port=${QUICKCHAT_S3_PORT:-5999}
kafka_port=${QUICKCHAT_KAFKA_PORT:-9092}
mongodb_port=${QUICKCHAT_MONGODB_PORT:-27017}
elasticsearch_port=${QUICKCHAT_ELASTICSEARCH_PORT:-9200}
kafka_controller_port=$((kafka_port + 1))
mongodb_tls_port=$((mongodb_port + 1))
elasticsearch_tls_port=$((elasticsearch_port + 43))
kafka_sasl_port=$((kafka_port + 2))
kafka_sasl_user=quickchat
kafka_sasl_password=quickchat-kafka-secret
kafka_tls_password=quickchat-tls
topics=(clickstream transactions chat-stream interactions alerts)
bucket=${QUICKCHAT_S3_BUCKET:-quickchat-it}
s3_access_key=${QUICKCHAT_TEST_S3_ACCESS_KEY_ID:-quickchat}
s3_secret_key=${QUICKCHAT_TEST_S3_SECRET_ACCESS_KEY:-quickchat-secret}
mysql_user=quickchat
mysql_password=quickchat
mysql_tls_user=quickchat_tls
mkdir -p "$state"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits for a port while the process in the pid file lives; on failure shows its log's end.
wait_for_port() {
  local port=$1 name=$2 log=$3 pidfile=$4
  for _ in $(seq 1 300); do
    listening "$port" && return 0
    if [ -e "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      break
    fi
    sleep 0.2
  done
  echo "$name did not start listening on 127.0.0.1:$port; the end of $log:" >&2
  tail -20 "$log" >&2 || true
  return 1
}

# Whether the server binary install-deps.sh builds is there; says what to run when not.
installed() {
  local binary=$1 what=$2 port=$3
  [ -x "$binary" ] && return 0
  echo "no $what on 127.0.0.1:$port and no $(basename "$binary") in $binary: run scripts/install-deps.sh test" >&2
  return 1
}

mysql_as_root() {
  mariadb --protocol=socket --socket="$1" -uroot -e "$2"
}

create_mysql_user() {
  local socket=$1
  mysql_as_root "$socket" "CREATE USER IF NOT EXISTS '$mysql_user'@'127.0.0.1' IDENTIFIED BY '$mysql_password';
    CREATE USER IF NOT EXISTS '$mysql_user'@'localhost' IDENTIFIED BY '$mysql_password';
    GRANT ALL PRIVILEGES ON *.* TO '$mysql_user'@'127.0.0.1' WITH GRANT OPTION;
    GRANT ALL PRIVILEGES ON *.* TO '$mysql_user'@'localhost' WITH GRANT OPTION;"
}

# A second test user that may connect over TLS only (on our own server, which has a certificate).
create_mysql_tls_user() {
  mysql_as_root "$1" "CREATE USER IF NOT EXISTS '$mysql_tls_user'@'127.0.0.1' IDENTIFIED BY '$mysql_password' REQUIRE SSL;
    GRANT ALL PRIVILEGES ON *.* TO '$mysql_tls_user'@'127.0.0.1';"
}

start_mariadb() {
  if [ -n "${QUICKCHAT_TEST_MYSQL_URL:-}" ]; then return; fi
  local socket="$state/mariadb.sock"
  if listening "$mysql_port"; then
    # Someone else's server: create the test user through the system socket if we may.
    for candidate in "$socket" /run/mysqld/mysqld.sock /var/run/mysqld/mysqld.sock; do
      if [ -S "$candidate" ] && create_mysql_user "$candidate" 2>/dev/null; then return; fi
    done
    echo "a MySQL server listens on 127.0.0.1:$mysql_port but the user $mysql_user could not be created;" \
      "set QUICKCHAT_TEST_MYSQL_URL=mysql://user:password@127.0.0.1:$mysql_port" >&2
    return 1
  fi
  local server
  server=$(command -v mariadbd || command -v mysqld || true)
  if [ -z "$server" ]; then
    echo "no MariaDB server: run scripts/install-deps.sh test" >&2
    return 1
  fi
  local data="$state/mariadb-data"
  if [ ! -d "$data/mysql" ]; then
    echo "initialising MariaDB's data folder $data" >&2
    rm -rf "$data"
    mariadb-install-db --no-defaults --datadir="$data" --user="$(id -un)" \
      --auth-root-authentication-method=socket --skip-test-db >"$state/mariadb-install.log" 2>&1
  fi
  test_tls
  echo "starting $server on 127.0.0.1:$mysql_port" >&2
  nohup "$server" --no-defaults --datadir="$data" --socket="$socket" --port="$mysql_port" \
    --bind-address=127.0.0.1 --user="$(id -un)" --pid-file="$state/mariadb.server.pid" \
    --innodb-buffer-pool-size=256M --max-connections=500 --skip-name-resolve \
    --ssl-cert="$state/tls/server.pem" --ssl-key="$state/tls/server.key" --ssl-ca="$state/tls/ca.pem" \
    >"$state/mariadb.log" 2>&1 &
  echo $! >"$state/mariadb.pid"
  wait_for_port "$mysql_port" MariaDB "$state/mariadb.log" "$state/mariadb.pid"
  create_mysql_user "$socket"
  create_mysql_tls_user "$socket"
  : >"$state/mariadb.tls"
}

start_s3() {
  if ! listening "$s3_port"; then
    local server="$cache/bin/minio"
    installed "$server" "S3 server" "$s3_port" || return 1
    echo "starting MinIO on 127.0.0.1:$s3_port" >&2
    mkdir -p "$state/minio-data"
    MINIO_ROOT_USER="$s3_access_key" MINIO_ROOT_PASSWORD="$s3_secret_key" MINIO_BROWSER=off \
      MINIO_UPDATE=off nohup "$server" server "$state/minio-data" --quiet --address "127.0.0.1:$s3_port" \
      >"$state/minio.log" 2>&1 &
    echo $! >"$state/minio.pid"
    wait_for_port "$s3_port" MinIO "$state/minio.log" "$state/minio.pid"
  fi
  python3 scripts/s3_create_bucket.py "http://127.0.0.1:$s3_port" "$bucket" "$s3_access_key" "$s3_secret_key"
}

start_mongodb() {
  if listening "$mongodb_port"; then return; fi
  local server="$cache/bin/ferretdb"
  installed "$server" "MongoDB server" "$mongodb_port" || return 1
  echo "starting FerretDB on 127.0.0.1:$mongodb_port" >&2
  mkdir -p "$state/ferretdb-data"
  test_tls
  nohup "$server" --handler=sqlite --sqlite-url="file:$state/ferretdb-data/" --state-dir="$state" \
    --listen-addr="127.0.0.1:$mongodb_port" --listen-tls="127.0.0.1:$mongodb_tls_port" \
    --listen-tls-cert-file="$state/tls/server.pem" --listen-tls-key-file="$state/tls/server.key" \
    --debug-addr=- --telemetry=disable --log-level=WARN \
    >"$state/ferretdb.log" 2>&1 &
  echo $! >"$state/ferretdb.pid"
  wait_for_port "$mongodb_port" FerretDB "$state/ferretdb.log" "$state/ferretdb.pid"
  wait_for_port "$mongodb_tls_port" "FerretDB (TLS)" "$state/ferretdb.log" "$state/ferretdb.pid"
}

start_elasticsearch() {
  local version home
  version=$(sed -n 's:.*<opensearch.version>\(.*\)</opensearch.version>.*:\1:p' scripts/opensearch/pom.xml)
  home="$cache/opensearch-$version"
  if ! listening "$elasticsearch_port"; then
    if [ ! -e "$home/.complete" ]; then
      echo "no Elasticsearch on 127.0.0.1:$elasticsearch_port and no OpenSearch in $home: run scripts/install-deps.sh test" >&2
      return 1
    fi
    local run_as=() folder="$state/opensearch"
    mkdir -p "$folder/data" "$folder/logs"
    rm -rf "$folder/config"
    cp -r "$home/config" "$folder/config"
    if [ "$(id -u)" -eq 0 ]; then
      id quickchat-search >/dev/null 2>&1 ||
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin quickchat-search
      # That user cannot enter root's home, where the cache is: it runs a copy (hard links).
      if [ ! -e "$folder/home/.complete" ]; then
        rm -rf "$folder/home"
        cp -al "$home" "$folder/home" 2>/dev/null || cp -a "$home" "$folder/home"
      fi
      home="$folder/home"
      # Its launcher works from its home, and the JVM writes logs/gc.log there.
      chown -R quickchat-search "$folder/data" "$folder/logs" "$folder/config" "$home/logs"
      run_as=(setpriv --reuid=quickchat-search --regid=nogroup --clear-groups)
    fi
    echo "starting OpenSearch $version on 127.0.0.1:$elasticsearch_port" >&2
    (OPENSEARCH_PATH_CONF="$folder/config" OPENSEARCH_JAVA_OPTS="-Xms512m -Xmx512m" \
      JAVA_HOME=${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")} \
      exec nohup "${run_as[@]}" "$home/bin/opensearch" -Ediscovery.type=single-node -Enetwork.host=127.0.0.1 \
      -Ehttp.port="$elasticsearch_port" -Etransport.port=$((elasticsearch_port + 100)) \
      -Epath.data="$folder/data" -Epath.logs="$folder/logs" -Ecluster.routing.allocation.disk.threshold_enabled=false) \
      >"$state/opensearch.log" 2>&1 &
    echo $! >"$state/opensearch.pid"
    wait_for_port "$elasticsearch_port" OpenSearch "$state/opensearch.log" "$state/opensearch.pid"
  fi
  # Listening is not yet serving: wait until the cluster takes writes.
  curl -fsS -o /dev/null "http://127.0.0.1:$elasticsearch_port/_cluster/health?wait_for_status=yellow&timeout=60s" || {
    echo "Elasticsearch on 127.0.0.1:$elasticsearch_port did not become ready; the end of $state/opensearch.log:" >&2
    tail -20 "$state/opensearch.log" >&2 || true
    return 1
  }
  # https in front of our OpenSearch (whose integration-test build has no security plugin):
  # socat terminates TLS with the test CA's certificate on the port + 43 and forwards to it.
  if [ -e "$state/opensearch.pid" ] && ! listening "$elasticsearch_tls_port" && command -v socat >/dev/null; then
    test_tls
    nohup socat "openssl-listen:$elasticsearch_tls_port,bind=127.0.0.1,reuseaddr,fork,verify=0,cert=$state/tls/server.pem,key=$state/tls/server.key" \
      "tcp:127.0.0.1:$elasticsearch_port" >"$state/elasticsearch-tls.log" 2>&1 &
    echo $! >"$state/elasticsearch-tls.pid"
    wait_for_port "$elasticsearch_tls_port" "TLS front of OpenSearch" "$state/elasticsearch-tls.log" "$state/elasticsearch-tls.pid"
  fi
}

kafka_libs() {
  local version
  version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)
  echo "$cache/kafka-$version/libs"
}

kafka_tool() {
  java -Dlog4j2.configurationFile="$PWD/scripts/kafka/log4j2.yaml" -cp "$(kafka_libs)/*" "$@"
}

# A test certificate authority and a server certificate for 127.0.0.1 signed by it, made once and
# used by Kafka's SASL_SSL listener and MariaDB: $state/tls/ca.pem is what clients trust,
# server.pem + server.key the servers' certificate and key, server.p12 the same for Kafka.
test_tls() {
  local tls="$state/tls"
  [ -e "$tls/server.p12" ] && return 0
  mkdir -p "$tls"
  (
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=quickchat-etl test CA" \
      -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out server.pem 2>/dev/null
    openssl pkcs12 -export -in server.pem -inkey server.key -certfile ca.pem -name server \
      -passout "pass:$kafka_tls_password" -out server.p12.part
    mv server.p12.part server.p12
  )
}

# The broker's topics. Listening is not yet serving: the list is retried while the broker comes
# up; when it never answers, its error and the end of the broker's log are shown.
kafka_topics() {
  local errors="$state/kafka-topics.err"
  for _ in $(seq 1 30); do
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$kafka_port" --list \
      2>"$errors" && return 0
    sleep 1
  done
  echo "Kafka on 127.0.0.1:$kafka_port does not list its topics:" >&2
  tail -5 "$errors" >&2 || true
  if [ -e "$state/kafka.log" ]; then
    echo "the end of $state/kafka.log:" >&2
    tail -20 "$state/kafka.log" >&2 || true
  fi
  return 1
}

start_kafka() {
  local libs
  libs=$(kafka_libs)
  if ! listening "$kafka_port"; then
    if [ ! -e "$libs/.complete" ]; then
      echo "no Kafka broker on 127.0.0.1:$kafka_port and no Apache Kafka in $libs: run scripts/install-deps.sh test" >&2
      return 1
    fi
    local data="$state/kafka-data" config="$state/kafka.properties"
    test_tls
    sed -e "s|@PORT@|$kafka_port|g" -e "s|@CONTROLLER_PORT@|$kafka_controller_port|g" -e "s|@DATA@|$data|g" \
      -e "s|@SASL_PORT@|$kafka_sasl_port|g" -e "s|@SASL_USER@|$kafka_sasl_user|g" \
      -e "s|@SASL_PASSWORD@|$kafka_sasl_password|g" -e "s|@TLS@|$state/tls|g" \
      -e "s|@TLS_PASSWORD@|$kafka_tls_password|g" scripts/kafka/server.properties >"$config"
    if [ ! -e "$data/meta.properties" ]; then
      rm -rf "$data"
      kafka_tool kafka.tools.StorageTool format --config "$config" \
        --cluster-id "$(kafka_tool kafka.tools.StorageTool random-uuid)" >"$state/kafka-format.log" 2>&1
    fi
    echo "starting Apache Kafka on 127.0.0.1:$kafka_port" >&2
    nohup java -Xms256m -Xmx1g -XX:+UseG1GC -Dlog4j2.configurationFile="$PWD/scripts/kafka/log4j2.yaml" \
      -cp "$libs/*" kafka.Kafka "$config" >"$state/kafka.log" 2>&1 &
    echo $! >"$state/kafka.pid"
    wait_for_port "$kafka_port" "Apache Kafka" "$state/kafka.log" "$state/kafka.pid"
  fi
  if [ -e "$libs/.complete" ]; then
    local existing
    existing=$(kafka_topics)
    local creating=()
    for topic in "${topics[@]}"; do
      grep -qx "$topic" <<<"$existing" && continue
      kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$kafka_port" \
        --create --if-not-exists --topic "$topic" --partitions 3 --replication-factor 1 >/dev/null &
      creating+=($!)
    done
    for pid in "${creating[@]}"; do wait "$pid"; done
    if listening "$kafka_sasl_port"; then
      # The same user for SCRAM-SHA-256, stored in the cluster metadata (idempotent).
      kafka_tool kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$kafka_port" --alter \
        --entity-type users --entity-name "$kafka_sasl_user" \
        --add-config "SCRAM-SHA-256=[iterations=4096,password=$kafka_sasl_password]" >/dev/null
    fi
  fi
}

case "${1:-start}" in
  start)
    shift || true
    wanted=("$@")
    [ ${#wanted[@]} -gt 0 ] || wanted=(mariadb s3 mongodb elasticsearch kafka)
    for service in "${wanted[@]}"; do
      case "$service" in
        mariadb) start_mariadb ;;
        s3) start_s3 ;;
        mongodb) start_mongodb ;;
        elasticsearch) start_elasticsearch ;;
        kafka) start_kafka ;;
        *) echo "unknown service $service (mariadb, s3, mongodb, elasticsearch, kafka)" >&2; exit 2 ;;
      esac
    done
    echo "export QUICKCHAT_TEST_MYSQL_URL=${QUICKCHAT_TEST_MYSQL_URL:-mysql://$mysql_user:$mysql_password@127.0.0.1:$mysql_port}"
    if [ -e "$state/mariadb.tls" ] && [ -e "$state/mariadb.pid" ] && kill -0 "$(cat "$state/mariadb.pid")" 2>/dev/null; then
      echo "export QUICKCHAT_TEST_MYSQL_TLS_URL=mysql://$mysql_tls_user:$mysql_password@127.0.0.1:$mysql_port"
    fi
    [ ! -e "$state/tls/ca.pem" ] || echo "export QUICKCHAT_TEST_TLS_CA=$state/tls/ca.pem"
    echo "export QUICKCHAT_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port"
    echo "export QUICKCHAT_TEST_S3_BUCKET=$bucket"
    echo "export QUICKCHAT_TEST_S3_ACCESS_KEY_ID=$s3_access_key"
    echo "export QUICKCHAT_TEST_S3_SECRET_ACCESS_KEY=$s3_secret_key"
    echo "export QUICKCHAT_TEST_KAFKA_BROKERS=127.0.0.1:$kafka_port"
    if [ -e "$state/tls/ca.pem" ] && listening "$kafka_sasl_port"; then
      echo "export QUICKCHAT_TEST_KAFKA_SASL_SSL_BROKERS=127.0.0.1:$kafka_sasl_port"
      echo "export QUICKCHAT_TEST_KAFKA_SASL_USERNAME=$kafka_sasl_user"
      echo "export QUICKCHAT_TEST_KAFKA_SASL_PASSWORD=$kafka_sasl_password"
    fi
    echo "export QUICKCHAT_TEST_MONGODB_URI=${QUICKCHAT_TEST_MONGODB_URI:-mongodb://127.0.0.1:$mongodb_port/}"
    if [ -e "$state/tls/ca.pem" ] && listening "$mongodb_tls_port"; then
      echo "export QUICKCHAT_TEST_MONGODB_TLS_URI=mongodb://127.0.0.1:$mongodb_tls_port/"
    fi
    echo "export QUICKCHAT_TEST_ELASTICSEARCH_URL=${QUICKCHAT_TEST_ELASTICSEARCH_URL:-http://127.0.0.1:$elasticsearch_port}"
    if [ -e "$state/tls/ca.pem" ] && listening "$elasticsearch_tls_port"; then
      echo "export QUICKCHAT_TEST_ELASTICSEARCH_HTTPS_URL=https://127.0.0.1:$elasticsearch_tls_port"
    fi
    # Not a service: the Airflow that scripts/install-deps.sh installed for the DAG test.
    echo "export QUICKCHAT_TEST_AIRFLOW_PYTHON=${QUICKCHAT_TEST_AIRFLOW_PYTHON:-$cache/airflow-venv/bin/python}"
    ;;
  stop)
    stopping=()
    for pidfile in "$state"/*.pid; do
      [ -e "$pidfile" ] || continue
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null && stopping+=("$pid")
      rm -f "$pidfile"
    done
    # Ended, so that a restart on the same data folder finds it unlocked.
    for pid in "${stopping[@]}"; do
      for _ in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
    done
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
