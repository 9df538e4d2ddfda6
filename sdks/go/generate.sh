#!/bin/sh
# Regenerates gen/stepline/v1 from protos/stepline/v1/*.proto with the code generators
# pinned in go.mod (tool dependencies) and grpcio-tools' protoc. Deterministic: two runs
# give identical files. PYTHON (default: the repo root's .venv/bin/python) must have
# grpcio-tools installed (./dev install does that). OUT (default: gen/ next to this script)
# is where the stepline/v1/*.pb.go files go; a drift check generates into a temporary OUT
# and compares it with gen/.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
PYTHON=${PYTHON:-$root/.venv/bin/python}
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
(cd "$here" && go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go \
    && go build -o "$bin/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc)
out=${OUT:-$here/gen}
rm -f "$out"/stepline/v1/*.pb.go
mkdir -p "$out/stepline/v1"
cd "$root"
"$PYTHON" -m grpc_tools.protoc -I protos \
    --plugin=protoc-gen-go="$bin/protoc-gen-go" --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
    --go_out="$out" --go_opt=paths=source_relative \
    --go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
    protos/stepline/v1/common.proto protos/stepline/v1/worker.proto protos/stepline/v1/client.proto
