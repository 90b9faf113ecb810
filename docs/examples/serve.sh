# Sourced by the example scripts: serve deploy/local.yaml in the background, and stop it.
# The caller sets PY (python), PORT and LOGS (a folder for the server's output).
serve() {  # serve NAME [costroute serve args...]: start, wait until it serves; sets SERVE_PID
  local name=$1; shift
  "$PY" -m costroute.cli serve --config deploy/local.yaml --port "$PORT" "$@" \
      > "$LOGS/$name.out" 2> "$LOGS/$name.err" &
  SERVE_PID=$!
  until grep -q "costroute: serving" "$LOGS/$name.out"; do
    kill -0 "$SERVE_PID" 2>/dev/null || { tail -20 "$LOGS/$name.err"; exit 1; }
    sleep 1
  done
}

stop() { kill -INT "$SERVE_PID"; wait "$SERVE_PID" || true; }
