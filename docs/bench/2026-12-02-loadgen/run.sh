#!/bin/bash
# sessiongate loadtest against wrk: the same upstream (sessiongate upstream --plain,
# 1 thread), 1 thread and 50 connections each, alternating, twice. Run from the
# project root after cargo build --release; needs wrk and curl.
BIN=${BIN:-target/release/sessiongate}
$BIN upstream --plain --listen 127.0.0.1:26500 --threads 1 > /tmp/lt-up.log 2>&1 &
up=$!
for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:26500/ && break; sleep 0.1; done
for i in 1 2; do
  echo "\$ wrk -t1 -c50 -d5s http://127.0.0.1:26500/"
  wrk -t1 -c50 -d5s http://127.0.0.1:26500/
  echo "\$ sessiongate loadtest --url http://127.0.0.1:26500/ --connections 50 --duration 5s --threads 1"
  $BIN loadtest --url http://127.0.0.1:26500/ --connections 50 --duration 5s --threads 1 --quiet
done
kill $up
