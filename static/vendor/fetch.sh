#!/usr/bin/env bash
# Fetches the browser libraries gpudock embeds, at pinned versions, from the npm
# registry, and keeps them unmodified (with their licence files) under static/vendor/.
# Run from anywhere: bash static/vendor/fetch.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# package@version  file-in-package...  (copied to static/vendor/<package>/)
fetch() {
  local spec="$1"; shift
  local name="${spec%@*}"
  (cd "$tmp" && npm pack --silent "$spec" >/dev/null)
  local tgz
  tgz="$(ls "$tmp"/*.tgz)"
  mkdir -p "$tmp/x" "$here/$name"
  tar -xzf "$tgz" -C "$tmp/x"
  for f in "$@"; do
    cp "$tmp/x/package/$f" "$here/$name/$(basename "$f")"
  done
  rm -rf "$tmp/x" "$tgz"
  echo "fetched $spec"
}

fetch htmx.org@2.0.8 dist/htmx.min.js LICENSE
fetch @xterm/xterm@6.0.0 lib/xterm.js css/xterm.css LICENSE
fetch @xterm/addon-fit@0.11.0 lib/addon-fit.js LICENSE
fetch asciinema-player@3.18.0 dist/bundle/asciinema-player.min.js dist/bundle/asciinema-player.css LICENSE
fetch uplot@1.6.32 dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE
