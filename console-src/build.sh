#!/bin/sh
# Rebuild the console's editor bundle (src/sageport/console/static/vendor/editor.js) from
# editor.js and the locked npm packages. Needs Node.js 18 or later; run it only
# when editor.js or package-lock.json changes, then commit the bundle.
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npx esbuild editor.js --bundle --format=esm --minify --legal-comments=eof \
  --target=es2020 --outfile=../src/sageport/console/static/vendor/editor.js

# The bundle contains the MIT-licensed CodeMirror and Lezer packages, whose
# licenses require their notices to travel with it.
notices=../src/sageport/console/static/vendor/editor.LICENSES.txt
: > "$notices"
for package in node_modules/@codemirror/* node_modules/@lezer/* node_modules/crelt \
  node_modules/style-mod node_modules/w3c-keyname node_modules/@marijn/*; do
  [ -f "$package/LICENSE" ] || continue
  printf '%s\n\n' "== ${package#node_modules/} ==" >> "$notices"
  cat "$package/LICENSE" >> "$notices"
  printf '\n' >> "$notices"
done
