#!/usr/bin/env bash
# Makes sure what Warren needs answers on this box: RabbitMQ, Redis, an S3-compatible endpoint,
# PostgreSQL with logical decoding, Mosquitto, and Node.js for the nodejs* runtimes.
# Uses docker compose where a Docker engine runs; otherwise installs Debian's packages when absent
# and starts the daemons. Safe to run again: a service that already answers is left alone.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
state="$here/.warren"
mkdir -p "$state"
S3_PORT=${WARREN_S3_PORT:-9310}
PY=${PYTHON:-python3}

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # port seconds name
  local i
  for ((i = 0; i < $2 * 5; i++)); do
    answers "$1" && return 0
    sleep 0.2
  done
  echo "ensure-services: $3 did not answer on 127.0.0.1:$1 within $2 s" >&2
  return 1
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  if ! answers 5672 || ! answers 6379 || ! answers "$S3_PORT"; then
    echo "ensure-services: starting RabbitMQ, Redis and an S3 server with docker compose"
    S3_PORT=$S3_PORT docker compose -f "$here/deploy/docker-compose.yml" up -d rabbitmq redis s3
  fi
fi

if ! answers 6379; then
  command -v redis-server >/dev/null 2>&1 || { echo "ensure-services: installing redis-server"; apt_install redis-server; }
  echo "ensure-services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  # Warren's registry and code bundles live here: keep them across a restart (AOF, fsync each
  # second, plus RDB snapshots). Only for a Redis this script starts itself.
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 \
    --appendonly yes --appendfsync everysec --save "3600 1 300 100 60 10000" \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for 6379 20 Redis
fi

if ! answers 5672; then
  command -v rabbitmq-server >/dev/null 2>&1 || { echo "ensure-services: installing rabbitmq-server"; apt_install rabbitmq-server; }
  echo "ensure-services: starting RabbitMQ"
  as_root rabbitmq-server -detached
  wait_for 5672 90 RabbitMQ
  as_root rabbitmqctl await_startup >/dev/null 2>&1 || true
fi

if ! answers "$S3_PORT"; then
  if ! "$PY" -c "import moto.server" 2>/dev/null; then
    echo "ensure-services: installing moto's S3 server"
    "$PY" -m pip install -q 'moto[server]'
  fi
  echo "ensure-services: starting an S3 endpoint (moto) on 127.0.0.1:$S3_PORT"
  nohup "$PY" -m moto.server -H 127.0.0.1 -p "$S3_PORT" >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  wait_for "$S3_PORT" 30 "the S3 endpoint"
fi

# PostgreSQL (the table-change source) needs wal_level=logical; Mosquitto (the MQTT source) runs
# on 127.0.0.1:1883. Changing wal_level needs one restart of PostgreSQL: done only here, and only
# when the setting is not logical yet.
PG_PORT=${WARREN_PG_PORT:-5432}
# The server binaries are needed even when a server answers: the tests start private ones.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "ensure-services: installing postgresql"; apt_install postgresql
fi
if ! command -v mosquitto >/dev/null 2>&1 || ! command -v mosquitto_pub >/dev/null 2>&1; then
  echo "ensure-services: installing mosquitto"; apt_install mosquitto mosquitto-clients
fi
if ! answers "$PG_PORT"; then
  cluster=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1 {print $1" "$2}')
  [ -n "$cluster" ] || { as_root pg_createcluster 15 main >/dev/null; cluster="15 main"; }
  echo "ensure-services: starting PostgreSQL $cluster"
  # shellcheck disable=SC2086
  as_root pg_ctlcluster $cluster start
  wait_for "$PG_PORT" 30 PostgreSQL
fi
pg() { as_root runuser -u postgres -- psql -p "$PG_PORT" -XAtqc "$1"; }
if [ "$(pg 'show wal_level')" != logical ]; then
  echo "ensure-services: setting PostgreSQL wal_level=logical (one restart)"
  pg "ALTER SYSTEM SET wal_level = logical" >/dev/null
  cluster=$(pg_lsclusters -h | awk -v port="$PG_PORT" '$3 == port {print $1" "$2; exit}')
  # shellcheck disable=SC2086
  as_root pg_ctlcluster $cluster restart
  wait_for "$PG_PORT" 30 PostgreSQL
  [ "$(pg 'show wal_level')" = logical ] || { echo "ensure-services: wal_level is still not logical" >&2; exit 1; }
fi

if ! answers 1883; then
  echo "ensure-services: starting Mosquitto"
  as_root mosquitto -d -c /etc/mosquitto/mosquitto.conf 2>/dev/null || as_root mosquitto -d -p 1883
  wait_for 1883 20 Mosquitto
fi

# The sandbox's network wall is a set of nftables rules on the sandbox uid range (sandbox/netwall.py).
command -v nft >/dev/null 2>&1 || { echo "ensure-services: installing nftables"; apt_install nftables; }

# Node.js runs the nodejs* runtimes (sandbox/node/); curl is what a shell `bootstrap` uses (the
# provided* tests). Without them those tests would only skip.
if ! command -v node >/dev/null 2>&1 && ! command -v nodejs >/dev/null 2>&1; then
  echo "ensure-services: installing Node.js (Debian's nodejs) for the nodejs* runtimes"
  apt_install nodejs
fi
command -v curl >/dev/null 2>&1 || { echo "ensure-services: installing curl"; apt_install curl; }

bash "$here/deploy/service-credentials.sh" ||
  echo "ensure-services: Warren's own users were not set up (above); the guest URLs still work" >&2

echo "ensure-services: RabbitMQ :5672, Redis :6379, S3 :$S3_PORT, PostgreSQL :$PG_PORT (wal_level=logical) and Mosquitto :1883 answer; node $(node --version 2>/dev/null || nodejs --version)"
