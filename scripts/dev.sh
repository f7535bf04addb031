#!/usr/bin/env bash
# Starts a local geth --dev node on the standard ports (HTTP 8545, websocket 8546; a new
# block every second, chain id 1337, an unlocked funded account) and the gateway on
# :8000 against it. Ctrl-C stops both. Extra arguments go to the gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
GETH="${GETH_BIN:-.bin/geth}"
for port in 8545 8546 8000; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "dev: port $port is already in use; stop what listens there (or run the gateway alone: ./task run)" >&2
    exit 1
  fi
done
"$GETH" --dev --dev.period 1 --nat none --ipcdisable --port 0 --maxpeers 0 \
  --authrpc.addr 127.0.0.1 --authrpc.port 8551 \
  --http --http.addr 127.0.0.1 --http.port 8545 --http.api eth,net,web3 \
  --ws --ws.addr 127.0.0.1 --ws.port 8546 --ws.api eth,net,web3 --verbosity 2 \
  >.bin/geth-dev.log 2>&1 &
geth_pid=$!
trap 'kill $geth_pid 2>/dev/null; wait $geth_pid 2>/dev/null' EXIT
for _ in $(seq 1 300); do
  if curl -fsS -H 'Content-Type: application/json' \
      -d '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}' http://127.0.0.1:8545 >/dev/null 2>&1; then
    break
  fi
  kill -0 $geth_pid 2>/dev/null || { echo "dev: geth exited; see .bin/geth-dev.log" >&2; exit 1; }
  sleep 0.2
done
echo "dev: geth --dev on http://127.0.0.1:8545 and ws://127.0.0.1:8546 (log: .bin/geth-dev.log)" >&2
echo "dev: gateway on http://127.0.0.1:8000 - try: curl localhost:8000/blocknumber" >&2
go run . -log-format text "$@"
