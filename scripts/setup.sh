#!/usr/bin/env bash
# Set up everything CIU Twin needs on a Debian machine, idempotently.
#   scripts/setup.sh [--browser] [--gdal] [--wrk]
# A second run checks stamps and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
want_browser=0
want_gdal=0
want_wrk=0
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    --gdal) want_gdal=1 ;;
    --wrk) want_wrk=1 ;;
    *) echo "setup: unknown option $arg" >&2; exit 2 ;;
  esac
done

# pip's own notices about this machine's extra package indexes are noise here
# and setuptools' notice on every editable install (the checkout's folders are the package by design)
quiet_pip() {
  "$VENV/bin/python" -m pip "$@" 2> >(grep -v "^WARNING: Location" \
    | sed '/BuildBackendWarning: Editable installation/,+9d' >&2)
}
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# --- system packages -------------------------------------------------------
pg_share=$(ls -d /usr/share/postgresql/1[5-9] 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pg_share" ] || [ ! -f "$pg_share/extension/postgis.control" ]; then
  say "installing PostgreSQL + PostGIS"
  apt_install postgresql-15-postgis-3 postgresql-contrib
fi
if [ "$want_browser" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  say "installing Chromium (headless browser tests)"
  apt_install chromium fonts-dejavu-core
fi
if [ "$want_gdal" = 1 ] && ! command -v ogr2ogr >/dev/null; then
  say "installing gdal-bin (benchmark peer)"
  apt_install gdal-bin
fi

if [ "$want_wrk" = 1 ] && ! command -v wrk >/dev/null; then
  say "installing wrk (API benchmark load generator)"
  apt_install wrk
fi

# --- Python ----------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.ciu-installed"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing Python packages into $VENV"
  quiet_pip install -q --upgrade pip
  # The CPU build of torch first, so that nothing later pulls a CUDA build.
  quiet_pip install -q "torch==2.13.0"
  quiet_pip install -q -e ".[all]"
  cuda=$("$VENV/bin/python" -c 'import torch; print(torch.version.cuda)')
  if [ "$cuda" != "None" ]; then
    echo "setup: a CUDA build of torch was installed ($cuda); CIU Twin expects the CPU build" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi

# --- The official CityJSON schema, for the CityJSON export's tests ------------
# Taken out of the official validator's wheel on PyPI, pinned by hash: see the script.
cityjson_schema="$VENV/share/cityjson/2.0.0/cityjson.schema.json"
if [ ! -f "$cityjson_schema" ]; then
  say "fetching the official CityJSON 2.0 schema"
  "$VENV/bin/python" scripts/cityjson_schema.py "$cityjson_schema" 2> >(grep -v "^WARNING: Location" >&2)
fi

# --- JavaScript for the offline views -------------------------------------
# Packages under "prebuilt" in viz/js/package.json are used only for their
# prebuilt browser bundle: kepler.gl's npm package would otherwise pull in its
# whole source build (about a thousand packages, 900 MB) for the one UMD file
# the offline kepler.gl page loads. Each is fetched alone with `npm pack`,
# checked against its pinned integrity and unpacked into node_modules with the
# entries named in "keep" and none of its dependencies.
prebuilt() { (cd viz/js && node -e '
  const p = require("./package.json").prebuilt || {};
  for (const [name, s] of Object.entries(p)) console.log(name, s.version, s.integrity, s.keep.join(" "));'); }

install_prebuilt() {
  local name version integrity keep tmp got
  while read -r name version integrity keep; do
    tmp=$(mktemp -d)
    got=$(cd "$tmp" && npm pack "$name@$version" --json --loglevel=error 2>/dev/null \
      | node -e 'let s = ""; process.stdin.on("data", d => s += d).on("end", () => console.log(JSON.parse(s)[0].integrity))')
    if [ "$got" != "$integrity" ]; then
      echo "setup: npm package $name@$version has integrity $got, expected $integrity" >&2
      rm -rf "$tmp"
      return 1
    fi
    rm -rf "viz/js/node_modules/$name"
    mkdir -p "viz/js/node_modules/$name"
    # shellcheck disable=SC2086  # keep is a list of entries
    tar xzf "$tmp"/*.tgz -C "viz/js/node_modules/$name" --strip-components=1 $(printf 'package/%s ' $keep)
    rm -rf "$tmp"
  done < <(prebuilt)
}

if [ -f viz/js/package.json ]; then
  js_stamp=viz/js/node_modules/.ciu-installed
  js_want=$(cat viz/js/package.json viz/js/package-lock.json 2>/dev/null | sha256sum | cut -c1-16)
  js_missing=0
  while read -r name _; do
    [ -d "viz/js/node_modules/$name" ] || js_missing=1
  done < <(prebuilt)
  if [ ! -f "$js_stamp" ] || [ "$(cat "$js_stamp")" != "$js_want" ] || [ "$js_missing" = 1 ]; then
    say "installing JavaScript packages (deck.gl, maplibre, cesium, kepler.gl) from npm"
    (cd viz/js && npm ci --no-audit --no-fund --legacy-peer-deps --loglevel=error 2>/dev/null \
      || npm install --no-audit --no-fund --legacy-peer-deps --loglevel=error)
    install_prebuilt
    echo "$js_want" > "$js_stamp"
  fi
fi
say "ready"
