#!/usr/bin/env bash
# The main job, end to end: install Sageport, train the example scikit-learn
# model, start a server, deploy the model with the AWS CLI, invoke it with
# `aws sagemaker-runtime invoke-endpoint`, print the answer and stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_uv
"${UV[@]}" sync --frozen --quiet
VENV_BIN="$PWD/.venv/bin"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sageport-demo.XXXXXX")
PORT=${SAGEPORT_DEMO_PORT:-8765}
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "==> Training the example model (scikit-learn LogisticRegression on iris)"
"$VENV_BIN/python" examples/sklearn-iris/train.py --output "$WORK/model.tar.gz"

echo "==> Starting sageport serve on 127.0.0.1:$PORT (log: $WORK/server.log)"
"$VENV_BIN/sageport" serve --port "$PORT" --data-dir "$WORK/data" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
"$VENV_BIN/python" - "$PORT" <<'PY'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/ping"
for _ in range(300):
    try:
        urllib.request.urlopen(url, timeout=1)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit(f"The server did not answer on {url}")
PY

# Unmodified AWS clients reach Sageport through AWS_ENDPOINT_URL. The keys are
# placeholders: without authentication configured, a loopback server accepts any.
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
export AWS_ACCESS_KEY_ID=sageport AWS_SECRET_ACCESS_KEY=sageport AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
aws() { "$VENV_BIN/aws" "$@"; }

echo "==> aws sagemaker create-model / create-endpoint-config / create-endpoint"
aws sagemaker create-model --model-name iris \
  --primary-container "Image=sageport/sklearn,ModelDataUrl=file://$WORK/model.tar.gz" \
  --execution-role-arn arn:aws:iam::123456789012:role/sageport >/dev/null
aws sagemaker create-endpoint-config --endpoint-config-name iris \
  --production-variants VariantName=AllTraffic,ModelName=iris,InitialInstanceCount=1,InstanceType=ml.m5.large >/dev/null
START=$(date +%s.%N)
aws sagemaker create-endpoint --endpoint-name iris --endpoint-config-name iris

# `aws sagemaker wait endpoint-in-service` works too, but polls every 30 s.
while true; do
  STATUS=$(aws sagemaker describe-endpoint --endpoint-name iris --query EndpointStatus --output text)
  [[ "$STATUS" == Creating ]] || break
  sleep 0.1
done
END=$(date +%s.%N)
ELAPSED=$("$VENV_BIN/python" -c "print(f'{$END - $START:.2f}')")
echo "Endpoint iris is $STATUS, $ELAPSED s after CreateEndpoint"
if [[ "$STATUS" != InService ]]; then
  aws sagemaker describe-endpoint --endpoint-name iris --query FailureReason --output text
  exit 1
fi

echo "==> aws sagemaker-runtime invoke-endpoint --endpoint-name iris --body fileb://examples/sklearn-iris/input.json out.json"
aws sagemaker-runtime invoke-endpoint --endpoint-name iris \
  --content-type application/json --body fileb://examples/sklearn-iris/input.json "$WORK/out.json"
echo "==> Prediction:"
cat "$WORK/out.json"
echo
