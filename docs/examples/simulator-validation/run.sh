#!/usr/bin/env bash
# The simulator against reality on the default CPU fleet (deploy/local.yaml).
#  1. Profile each backend THROUGH THE SERVING PATH: `costroute serve --backend ID`, then
#     `costroute profile measure --url` (HTTP, Ray Serve proxy -> ingress -> replica), so the
#     tables include what a client sees, not only the engine (profiles/served/).
#  2. Live: `costroute serve` (the whole fleet); how much the backends, which share this
#     machine's cores, slow each other down, with each busy neighbour keeping 1 and 2 requests
#     in flight: `costroute profile interference` (profiles/interference.json); each backend
#     profiled again through the running fleet, pinned with x-costroute-pin-backend
#     (profiles/in-fleet/); then 90-second load tests of the mixed chat/document workload at
#     1.5 and 3 req/s, each run twice (live-R/, live-R-repeat/): the repeat against the first
#     (live-R-repeat/validation.md) is how far two live runs of the same requests drift apart.
#     Before the first live run and after each, every backend's speed is probed against its
#     in-fleet table (`costroute profile probe`, profiles/probes/N/): this machine's speed
#     drifts by 10-25% within minutes; the probes' lone TTFTs also give the serving path's
#     jitter as of then.
#  3. `costroute simulate --against` each live run, once with the fleet's own (in-process)
#     tables, the served tables, the in-fleet tables, the in-fleet tables with the
#     interference table, and the in-fleet tables rescaled by the probes just before and just
#     after the live run (`costroute profile rescale`, profiles/rescaled-R/) with the
#     interference table (sim-*/validation.md).
#
#   docs/examples/simulator-validation/run.sh          (~40 min on a 2-core machine)
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=${OUT:-docs/examples/simulator-validation}
PY=${PY:-.venv/bin/python}
PORT=${PORT:-8300}
LOGS=$(mktemp -d)
CR=("$PY" -m costroute.cli)

source docs/examples/serve.sh  # serve NAME [--backend ID], stop
capacity() {  # capacity ID KEY: from the backend's in-process table
  "$PY" -c "import json,sys; print(json.load(open('profiles/tables/$1.json'))['capacity']['$2'])"
}

mkdir -p "$OUT/profiles/served"
for b in cpu-vllm cpu-onnxruntime cpu-onnxruntime-1t; do
  serve "profile-$b" --backend "$b"
  "${CR[@]}" profile measure --url "http://127.0.0.1:$PORT" --model costroute-llama-tiny \
      --backend-id "$b" --accelerator cpu --quick --idle-ms 500 \
      --out "$OUT/profiles/served/$b.json" \
      --max-num-seqs "$(capacity "$b" max_num_seqs)" --kv-tokens "$(capacity "$b" kv_tokens)"
  stop
done

WORKLOAD=(--mix chat-doc --slo-mix interactive=0.3,standard=0.5,batch=0.2 --seed 7
          --duration 90 --warmup 5 --no-progress)
serve fleet
"${CR[@]}" profile interference --url "http://127.0.0.1:$PORT" --model costroute-llama-tiny \
    --backends cpu-vllm,cpu-onnxruntime,cpu-onnxruntime-1t --node "2-core VM" --background 1,2 \
    --repetitions 7 --out "$OUT/profiles/interference.json"
mkdir -p "$OUT/profiles/in-fleet"  # last before the live runs: this machine's speed drifts
for b in cpu-vllm cpu-onnxruntime cpu-onnxruntime-1t; do  # each pinned, the others up
  "${CR[@]}" profile measure --url "http://127.0.0.1:$PORT" --model costroute-llama-tiny \
      --pin-backend "$b" --backend-id "$b" --accelerator cpu --quick --idle-ms 500 \
      --out "$OUT/profiles/in-fleet/$b.json" \
      --max-num-seqs "$(capacity "$b" max_num_seqs)" --kv-tokens "$(capacity "$b" kv_tokens)"
done
probes=0
probe() {  # each backend's speed now against its in-fleet table -> profiles/probes/N/
  for b in cpu-vllm cpu-onnxruntime cpu-onnxruntime-1t; do
    "${CR[@]}" profile probe --url "http://127.0.0.1:$PORT" --model costroute-llama-tiny \
        --pin-backend "$b" --table "$OUT/profiles/in-fleet/$b.json" --repetitions 9 \
        --out "$OUT/profiles/probes/$probes/$b.json"
  done
  probes=$((probes + 1))
}
rm -rf "${OUT:?}/profiles/probes"
probe
for rate in 1.5 3; do
  for repeat in "" "-repeat"; do
    rm -rf "${OUT:?}/live-$rate$repeat"
    "${CR[@]}" loadtest run --url "http://127.0.0.1:$PORT" --fleet deploy/local.yaml \
        --rate "$rate" "${WORKLOAD[@]}" --out "$OUT/live-$rate$repeat" \
        --label "live $rate req/s${repeat:+, repeat}"
    probe
  done
  "$PY" -c "import sys; from pathlib import Path
from loadtest.results import read_summary; from loadtest.simulate_cmd import write_validation
a, b = (read_summary(Path(sys.argv[1]) / d / 'summary.json') for d in sys.argv[2:])
write_validation(Path(sys.argv[1]) / sys.argv[3], a, b, 'Live vs its repeat', 'repeat')" \
      "$OUT" "live-$rate" "live-$rate-repeat"
done
stop

SERVED=(); IN_FLEET=()
for b in cpu-vllm cpu-onnxruntime cpu-onnxruntime-1t; do
  SERVED+=(--profile "$b=$OUT/profiles/served/$b.json")
  IN_FLEET+=(--profile "$b=$OUT/profiles/in-fleet/$b.json")
done
first=0  # live-1.5 lies between probes 0 and 1, live-3 between probes 2 and 3
for rate in 1.5 3; do
  RESCALED=()
  for b in cpu-vllm cpu-onnxruntime cpu-onnxruntime-1t; do
    "${CR[@]}" profile rescale --table "$OUT/profiles/in-fleet/$b.json" \
        --probe "$OUT/profiles/probes/$first/$b.json" \
        --probe "$OUT/profiles/probes/$((first + 1))/$b.json" \
        --out "$OUT/profiles/rescaled-$rate/$b.json"
    RESCALED+=(--profile "$b=$OUT/profiles/rescaled-$rate/$b.json")
  done
  first=$((first + 2))
  "${CR[@]}" simulate --fleet deploy/local.yaml --against "$OUT/live-$rate" \
      --out "$OUT/sim-engine-tables-$rate" --label "simulated $rate req/s, engine tables"
  "${CR[@]}" simulate --fleet deploy/local.yaml --against "$OUT/live-$rate" "${SERVED[@]}" \
      --out "$OUT/sim-served-tables-$rate" --label "simulated $rate req/s, served tables"
  "${CR[@]}" simulate --fleet deploy/local.yaml --against "$OUT/live-$rate" "${IN_FLEET[@]}" \
      --out "$OUT/sim-in-fleet-tables-$rate" --label "simulated $rate req/s, in-fleet tables"
  "${CR[@]}" simulate --fleet deploy/local.yaml --against "$OUT/live-$rate" "${IN_FLEET[@]}" \
      --interference "$OUT/profiles/interference.json" --out "$OUT/sim-interference-$rate" \
      --label "simulated $rate req/s, in-fleet tables + interference"
  "${CR[@]}" simulate --fleet deploy/local.yaml --against "$OUT/live-$rate" "${RESCALED[@]}" \
      --interference "$OUT/profiles/interference.json" --out "$OUT/sim-rescaled-$rate" \
      --label "simulated $rate req/s, in-fleet tables rescaled by the probes + interference"
done
rm -f "$OUT"/*/report.html  # the markdown reports and plots stay; keeps the repo small
echo "serve logs: $LOGS"
