#!/bin/sh
# Test certificates for docker-compose.redis-tls.yml: a private CA and a certificate for the
# host name `redis`, signed by it. Production uses the managed service's certificates instead.
set -eu
cd "$(dirname "$0")"
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=llm-gateway redis CA" \
  -keyout ca.key -out ca.crt
openssl req -newkey rsa:2048 -nodes -subj "/CN=redis" -keyout redis.key -out redis.csr
printf 'subjectAltName=DNS:redis,DNS:localhost,IP:127.0.0.1\n' > redis.ext
openssl x509 -req -in redis.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
  -extfile redis.ext -out redis.crt
rm -f redis.csr redis.ext ca.srl
# redis-server in the container runs as uid 999 and must read its key.
chmod 644 ca.crt redis.crt redis.key
