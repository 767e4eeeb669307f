# Sourced by scripts/callgrind and scripts/flamegraph: the bench's nginx
# upstream and IdP on 127.0.0.1, the gateway's config for a mode, and the
# warm-up that caches every session before anything is counted.
#
# The caller sets: run (a fresh folder), up, idp, gw, admin (ports), mode
# (hit, public or floor), peers (../shared/bench/peers) and pids (an array
# the caller's EXIT trap kills), and calls loopback_cleanup from that trap.

loopback_cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for name in upstream idp; do
    [ -f "$run/$name.pid" ] && kill "$(cat "$run/$name.pid")" 2>/dev/null || true
  done
}

# The bench's IdP answers expires_in=15, so every session would be renewed
# inside a counted window now and then, and a "hit" run would count a few
# hundred IdP calls, more or fewer by chance (about ±1k instructions per
# request). An hour keeps a hit run all hits; EXPIRES_IN=15 is the bench's.
loopback_start_peers() {
  local expires_in=${EXPIRES_IN:-3600} spec name port
  for spec in "upstream:$up" "idp:$idp"; do
    name=${spec%:*} port=${spec#*:}
    sed -e "s|@RUN_DIR@|$run|g" -e "s|@NAME@|$name|g" -e "s|@PORT@|$port|g" \
        -e 's|@IDP_PEER_RULE@|if ($idp_headers_only) { return 200; }|g' \
        -e "s|@WORKERS@|1|g" -e "s|@UPSTREAM_PORT@|$up|g" -e "s|@IDP_PORT@|$idp|g" \
        -e "s|\"expires_in\":15}|\"expires_in\":$expires_in}|" \
        "$peers/$name.nginx.conf.tmpl" >"$run/$name.conf"
    mkdir -p "$run/$name.tmp"
    nginx -p "$run" -e "$run/$name.error.log" -c "$run/$name.conf"
  done
}

# hit: a required route with the default access log; public: an
# `auth = "public"` route with the log off (the proxy core).
loopback_gateway_config() {
  local auth access
  case $mode in
    hit) auth=required access=true ;;
    public | floor) auth=public access=false ;;
    *) echo "$0: mode is hit, public or floor, not $mode" >&2; exit 2 ;;
  esac
  cat >"$run/gateway.toml" <<TOML
[server]
listen = "127.0.0.1:$gw"
[session]
id_cookie = "iid_session_id"
[idp]
provider = "iid"
base_url = "http://127.0.0.1:$idp/middleware/api/external"
api_key = "bench"
client_id = "BENCH"
timeout = "2s"
[cache]
max_entries = 100000
max_ttl = "5m"
negative_ttl = "5s"
[[routes]]
prefix = "/"
upstream = "http://127.0.0.1:$up"
auth = "$auth"
[log]
access = $access
TOML
}

loopback_wait_ready() {
  for _ in $(seq 200); do
    if [ "$mode" = floor ]; then
      curl -s -o /dev/null "http://127.0.0.1:$gw/" && return 0
    else
      curl -s -o /dev/null "http://127.0.0.1:$admin/healthz" && return 0
    fi
    sleep 0.3
  done
  echo "$0: the gateway did not come up" >&2
  exit 1
}

loopback_idp_calls() {
  curl -s "http://127.0.0.1:$admin/metrics" |
    awk '/^sessiongate_idp_requests_total/ {n += $NF} END {print n + 0}'
}

# Warm-up: every connection open and, for a hit run, every session cached.
# By count, not by time: on a slow hour 6 s under valgrind reached only
# 850 of the 1,000 sessions, and the counted window then made IdP calls.
# wrk-sessions.lua cycles BENCH_SESSIONS sessions (its default, 1,000).
# Sets warm, the IdP calls so far.
loopback_warm_up() {
  local lua=$1 sessions=${BENCH_SESSIONS:-1000}
  wrk -t1 -c10 -d6s -s "$lua" "http://127.0.0.1:$gw/" >/dev/null
  warm=0
  [ "$mode" = hit ] || return 0
  for _ in $(seq 20); do
    [ "$(loopback_idp_calls)" -ge "$sessions" ] && break
    wrk -t1 -c10 -d3s -s "$lua" "http://127.0.0.1:$gw/" >/dev/null
  done
  warm=$(loopback_idp_calls)
  [ "$warm" -ge "$sessions" ] || { echo "$0: only $warm of $sessions sessions cached after the warm-up" >&2; exit 1; }
}
