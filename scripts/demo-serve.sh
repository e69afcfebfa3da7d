#!/usr/bin/env bash
# Train a small tower model on the twin (once), publish its forecasts and alerts,
# mint a demo API key and serve the API and the dashboard together.
#   scripts/demo-serve.sh [TARGET_VARIABLE]
# Ctrl-C stops both servers.
set -euo pipefail
cd "$(dirname "$0")/.."
CIU=${CIU:-.venv/bin/ciu}
PY=${PY:-.venv/bin/python}
TARGET=${1:-people}
API_PORT=${CIU_API_PORT:-8000}
DASH_PORT=${CIU_DASHBOARD_PORT:-8050}

trained=$($PY - "$TARGET" <<'PY'
import sys
from ciu import Twin
with Twin.connect() as twin:
    runs = twin.store.model_runs()
    ok = runs[(runs["kind"] == "tower") & (runs["status"] == "trained")] if len(runs) else runs
    ok = ok[ok["params"].map(lambda p: p.get("target", "people") == sys.argv[1])] if len(ok) else ok
    print(int(ok["id"].max()) if len(ok) else "")
PY
)
if [ -z "$trained" ]; then
  echo "training a small tower model on '$TARGET' (a minute or two on a laptop CPU)…"
  $CIU train --target "$TARGET" --epochs 4 --max-steps 30
else
  echo "using trained model run $trained"
fi
$CIU predict
KEY=$($CIU keys create --role admin --name demo | tail -n 1)

cleanup() { kill "${API_PID:-}" "${DASH_PID:-}" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
$CIU serve --port "$API_PORT" &
API_PID=$!
CIU_DASHBOARD_API_KEY="$KEY" CIU_DASHBOARD_VARIABLE="$TARGET" $CIU dashboard serve --port "$DASH_PORT" --no-publish &
DASH_PID=$!
sleep 3
cat <<MSG

  CIU Twin is up (Ctrl-C stops it)
  API        http://127.0.0.1:${API_PORT}/        OpenAPI: http://127.0.0.1:${API_PORT}/docs
  dashboard  http://127.0.0.1:${DASH_PORT}/       planner: http://127.0.0.1:${DASH_PORT}/planner
  demo key   ${KEY}   (role admin; send it as the X-API-Key header)
  try        curl -H "X-API-Key: ${KEY}" "http://127.0.0.1:${API_PORT}/predictions?level=district&horizon=1"

MSG
wait
