#!/usr/bin/env bash
# Price-performance of the default CPU fleet (deploy/local.yaml): each backend served alone,
# then the whole fleet under the cost-slo policy, each swept over rising Poisson rates of the
# mixed chat/document workload until fewer than 90% of requests meet their SLO class.
# Writes one sweep folder per case and the frontier (frontier.md / .html / plots/) here
# (the per-request records.jsonl files are not committed: see .gitignore).
#
#   docs/examples/price-performance/run.sh          (~15 min on a 2-core machine)
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-docs/examples/price-performance}
PY=${PY:-.venv/bin/python}
PORT=${PORT:-8200}
LOGS=$(mktemp -d)
WORKLOAD=(--mix chat-doc --slo-mix interactive=0.3,standard=0.5,batch=0.2 --seed 1
          --start 1 --factor 1.5 --max-rate 12 --duration 20 --warmup 3 --attainment 0.9)

source docs/examples/serve.sh  # serve NAME [--backend ID], stop

sweep() {  # sweep NAME [--backend ID]
  local name=$1; shift
  serve "$name" "$@"
  rm -rf "${OUT:?}/$name"
  "$PY" -m costroute.cli loadtest sweep --url "http://127.0.0.1:$PORT" --fleet deploy/local.yaml \
      "$@" "${WORKLOAD[@]}" --out "$OUT/$name" --label "$name" --no-progress
  stop
  rm -f "$OUT/$name"/rate-*/report.html  # the markdown reports and plots stay; keeps the repo small
}

for backend in cpu-vllm cpu-onnxruntime cpu-onnxruntime-1t; do
  sweep "$backend" --backend "$backend"
done
sweep fleet-cost-slo
"$PY" -m costroute.cli loadtest compare "$OUT"/cpu-vllm "$OUT"/cpu-onnxruntime \
    "$OUT"/cpu-onnxruntime-1t "$OUT"/fleet-cost-slo --out "$OUT"
echo "serve logs: $LOGS"
