#!/usr/bin/env bash
# Gives Warren a RabbitMQ user and a Redis ACL user of its own and writes their URLs to an env file
# that only root and the service user can read (WARREN_ENV_FILE: /etc/warren/warren.env as root,
# else .warren/warren.env). Safe to run again: the passwords already in the file are kept.
# It only ADDS: RabbitMQ's guest and Redis's default user are left as they are, because a shared
# development box (and the test suite) still uses them; production turns them off (deploy/README.md).
# WARREN_SERVICE_USER names the user (default warren).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
user=${WARREN_SERVICE_USER:-warren}
if [ "$(id -u)" = 0 ]; then default_file=/etc/warren/warren.env; else default_file="$here/.warren/warren.env"; fi
env_file=${WARREN_ENV_FILE:-$default_file}
amqp_hostport=${WARREN_AMQP_HOSTPORT:-127.0.0.1:5672}
redis_hostport=${WARREN_REDIS_HOSTPORT:-127.0.0.1:6379}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }  # hex: no URL escaping needed
kept() { # the password already in the env file's URL for $1 (WARREN_AMQP_URL / WARREN_REDIS_URL)
  [ -f "$env_file" ] || return 0
  sed -n "s|^$1=[a-z]*://$user:\([0-9a-f]*\)@.*|\1|p" "$env_file" | tail -n 1
}

amqp_pass=$(kept WARREN_AMQP_URL); [ -n "$amqp_pass" ] || amqp_pass=$(secret)
redis_pass=$(kept WARREN_REDIS_URL); [ -n "$redis_pass" ] || redis_pass=$(secret)

# RabbitMQ: add the user once, put its password right if it changed, full rights on vhost "/".
# On the node here, or in deploy/docker-compose.yml's container.
if ! command -v rabbitmqctl >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; then
  rabbitmqctl() { docker compose -f "$here/deploy/docker-compose.yml" exec -T rabbitmq rabbitmqctl "$@"; }
  as_root() { "$@"; }
fi
if as_root rabbitmqctl -q list_users >/dev/null 2>&1; then
  if ! as_root rabbitmqctl -q list_users | awk 'NR > 1 {print $1}' | grep -qx "$user"; then
    as_root rabbitmqctl -q add_user "$user" "$amqp_pass" >/dev/null
  elif ! as_root rabbitmqctl -q authenticate_user "$user" "$amqp_pass" >/dev/null 2>&1; then
    as_root rabbitmqctl -q change_password "$user" "$amqp_pass" >/dev/null
  fi
  as_root rabbitmqctl -q set_permissions -p / "$user" '.*' '.*' '.*' >/dev/null
else
  echo "service-credentials: rabbitmqctl cannot reach the node; add user $user yourself" >&2
fi

# Redis: an ACL user with every command and key (Redis >= 6). Reset and set in one go, so a run
# again leaves exactly one password. Runtime only: a Redis with an ACL file keeps it via ACL SAVE.
redis_host=${redis_hostport%:*}; redis_port=${redis_hostport##*:}
command -v redis-cli >/dev/null 2>&1 || { echo "service-credentials: no redis-cli" >&2; exit 1; }
if ! redis-cli -h "$redis_host" -p "$redis_port" ACL SETUSER "$user" reset on ">$redis_pass" '~*' '&*' '+@all' >/dev/null; then
  echo "service-credentials: could not add the Redis ACL user $user" >&2
  exit 1
fi

# The env file: root's, readable by the service user's group when that user exists, else root only.
mkdir -p "$(dirname "$env_file")"
tmp=$(mktemp "$env_file.XXXXXX")
chmod 0600 "$tmp"
{
  [ -f "$env_file" ] && grep -v -e '^WARREN_AMQP_URL=' -e '^WARREN_REDIS_URL=' "$env_file" || true
  echo "WARREN_AMQP_URL=amqp://$user:$amqp_pass@$amqp_hostport/%2F"
  echo "WARREN_REDIS_URL=redis://$user:$redis_pass@$redis_hostport/0"
} >"$tmp"
if [ "$(id -u)" = 0 ] && getent group "$user" >/dev/null 2>&1; then
  chown "root:$user" "$tmp"
  chmod 0640 "$tmp"
fi
mv -f "$tmp" "$env_file"
echo "service-credentials: RabbitMQ and Redis user $user; URLs in $env_file (mode $(stat -c %a "$env_file"))"
