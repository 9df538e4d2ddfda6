#!/bin/sh
# Regenerates src/gen/ (TypeScript for protos/stepline/v1/*.proto) with protoc-gen-es from
# node_modules and protoc from grpcio-tools. The output depends only on the .proto files
# and the pinned versions in package-lock.json, so running it twice gives the same bytes.
#
#   sdks/typescript/generate.sh            # writes sdks/typescript/src/gen/
#   sdks/typescript/generate.sh OUT_DIR    # writes OUT_DIR instead (for a drift check)
#
# PYTHON: the Python with grpcio-tools (default: the repository's .venv/bin/python).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/src/gen}
python=${PYTHON:-$root/.venv/bin/python}
plugin=$here/node_modules/.bin/protoc-gen-es
[ -x "$plugin" ] || { echo "$plugin is missing: run npm ci in $here" >&2; exit 1; }
[ -x "$python" ] || command -v "$python" >/dev/null 2>&1 \
    || { echo "no Python at $python: run ./dev install, or set PYTHON" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
# Only what this script writes: a protos/ file removed or renamed leaves nothing behind.
rm -rf "$out/stepline"
cd "$root"
"$python" -m grpc_tools.protoc -I protos \
    --plugin=protoc-gen-es="$plugin" \
    --es_out="$out" --es_opt=target=ts,import_extension=js \
    protos/stepline/v1/*.proto
