#!/bin/sh
# A `provided` runtime in shell and curl, as in AWS's custom runtime tutorial. What it does
# depends on the event: echo it, fail, exit, sleep, or use too much memory.
set -eu
api="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
case "${_HANDLER}" in init-error)
  curl -sS -X POST "$api/init/error" -d '{"errorMessage":"cannot init","errorType":"InitFailed"}' >/dev/null
  exit 1;;
esac
echo "init done"
while true; do
  headers=/tmp/headers
  event=$(curl -sS -D "$headers" "$api/invocation/next")
  id=$(grep -i '^lambda-runtime-aws-request-id:' "$headers" | tr -d '\r' | cut -d' ' -f2)
  echo "handling $id"
  case "$event" in
    *fail*) curl -sS "$api/invocation/$id/error" -H 'Lambda-Runtime-Function-Error-Type: Unhandled' \
              -d '{"errorMessage":"it failed","errorType":"ValueError"}' >/dev/null;;
    *exit*) exit 3;;
    *sleep*) sleep 30;;
    *oom*) x=$(head -c 400000000 /dev/zero | tr '\0' a); echo "${#x}";;
    *) curl -sS "$api/invocation/$id/response" -d "{\"echo\": $event, \"fn\": \"$AWS_LAMBDA_FUNCTION_NAME\", \"mem\": \"$AWS_LAMBDA_FUNCTION_MEMORY_SIZE\", \"deadline\": \"$(grep -i '^lambda-runtime-deadline-ms:' "$headers" | tr -d '\r' | cut -d' ' -f2)\"}" >/dev/null;;
  esac
done
