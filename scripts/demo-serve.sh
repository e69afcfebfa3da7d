#!/usr/bin/env bash
# Train the tower and its baselines on one variable of the twin and publish the champion
# (once per variable and data), store its forecasts and alerts, mint a demo API key and
# serve the API and the dashboard together.
#   scripts/demo-serve.sh [TARGET_VARIABLE]        (default: people)
# The model covers the lowest level where the variable is observed and every level above
# it, and learns from the variable's last DEMO_WINDOW_DAYS days (default 56: eight weeks
# hold the weekly lag and a 70/15/15 split, and training time does not grow with years of
# history); its learned models train for about DEMO_TRAIN_MINUTES minutes in all (default 1.5).
# Ctrl-C stops both servers.
set -euo pipefail
cd "$(dirname "$0")/.."
CIU=${CIU:-.venv/bin/ciu}
PY=${PY:-.venv/bin/python}
TARGET=${1:-people}
WINDOW_DAYS=${DEMO_WINDOW_DAYS:-56}
TRAIN_MINUTES=${DEMO_TRAIN_MINUTES:-1.5}
API_PORT=${CIU_API_PORT:-8000}
DASH_PORT=${CIU_DASHBOARD_PORT:-8050}

# the newest trained run of the target on the data now stored, if any and if this version can load it
trained=$($PY - "$TARGET" <<'PY'
import sys
from ciu import Twin
from ciu.errors import NotFound, ValidationError
from ciu.models.forecaster import ChampionForecaster, latest_run
with Twin.connect() as twin:
    try:
        row = latest_run(twin, target=sys.argv[1])
        ChampionForecaster.load(twin, int(row["id"]))  # a checkpoint of an earlier version is trained again
    except (NotFound, ValidationError):
        row = None
    print(int(row["id"]) if row is not None and row["data_hash"] == twin.store.data_hash() else "")
PY
)
if [ -z "$trained" ]; then
  echo "training the tower and its baselines on '$TARGET', its last $WINDOW_DAYS days (once: reused while the data stay the same)…"
  $CIU train --target "$TARGET" --window-days "$WINDOW_DAYS" --budget-minutes "$TRAIN_MINUTES"
else
  echo "using trained model run $trained of '$TARGET'"
  $CIU evaluate --run "$trained" --champion-only
fi
$CIU predict --target "$TARGET"
KEY=$($CIU keys create --role admin --name demo | tail -n 1)

cleanup() { kill "${API_PID:-}" "${DASH_PID:-}" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
$CIU serve --port "$API_PORT" &
API_PID=$!
CIU_DASHBOARD_API_KEY="$KEY" CIU_DASHBOARD_VARIABLE="$TARGET" $CIU dashboard serve --port "$DASH_PORT" --no-publish &
DASH_PID=$!
# wait until both answer (at most two minutes)
$PY - "http://127.0.0.1:${API_PORT}/health" "http://127.0.0.1:${DASH_PORT}/" <<'PY'
import sys, time, urllib.request
for url in sys.argv[1:]:
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=2).close()
            break
        except OSError:
            time.sleep(0.5)
    else:
        sys.exit(f"{url} does not answer")
PY
cat <<MSG

  CIU Twin is up, forecasting '${TARGET}' (Ctrl-C stops it)
  API        http://127.0.0.1:${API_PORT}/        OpenAPI: http://127.0.0.1:${API_PORT}/docs
  dashboard  http://127.0.0.1:${DASH_PORT}/       planner: http://127.0.0.1:${DASH_PORT}/planner
  demo key   ${KEY}   (role admin; send it as the X-API-Key header)
  try        curl -H "X-API-Key: ${KEY}" "http://127.0.0.1:${API_PORT}/predictions?variable=${TARGET}&level=district&horizon=1"

MSG
wait
