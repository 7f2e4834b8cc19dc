#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the end-to-end tests against the real server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The tests need more than kumo does: the API fuzzing test runs schemathesis (PyPI) against
# the server's OpenAPI document.
if ! python3 -c 'import schemathesis' >/dev/null 2>&1; then
    python3 -m pip install --quiet --root-user-action=ignore 'schemathesis>=4,<5'
fi
# The Lambda API's tests drive it with the clients Lambda users have: boto3 and the AWS CLI
# (version 1, the one on PyPI), installed together so pip picks one botocore for both.
if ! python3 -c 'import boto3, awscli' >/dev/null 2>&1; then
    python3 -m pip install --quiet --root-user-action=ignore boto3 awscli
fi
# The cluster's objects in an S3-compatible bucket are tested against moto's S3 server.
if ! python3 -c 'import moto.server, flask_cors' >/dev/null 2>&1; then
    python3 -m pip install --quiet --root-user-action=ignore 'moto[server]'
fi
# The Kubernetes manifests are checked offline against Kubernetes' own schemas.
if ! python3 -c 'import kubernetes_validate' >/dev/null 2>&1; then
    python3 -m pip install --quiet --root-user-action=ignore kubernetes-validate
fi
manifests=$(ls deploy/kubernetes/*.yaml | grep -v kustomization.yaml)
# shellcheck disable=SC2086
python3 -m kubernetes_validate --strict --quiet $manifests
# Lambda functions in Python run AWS's runtime interface client, installed for the tests here
# (the end-to-end tests start kumo with --lambda-runtimes pointing at it). Lambda tests run only
# as root (sandboxes need it), so elsewhere a failed install does not stop the others.
bash scripts/lambda-runtimes.sh target/lambda-runtimes || [ "$(id -u)" != 0 ]
# The tests' shell Lambda function (a `provided` runtime) talks to the Runtime API with curl.
if ! command -v curl >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl >/dev/null
fi
export KUMO_LAMBDA_RUNTIMES="$PWD/target/lambda-runtimes"
# The PostgreSQL backend's conformance suite runs against a private server, started here and
# stopped when the tests end (installed from Debian's packages as root when missing).
pg_dir=$(mktemp -d /tmp/kumo-postgres.XXXXXX)
trap 'bash scripts/postgres.sh stop "$pg_dir"; rm -rf "$pg_dir"' EXIT
if url=$(bash scripts/postgres.sh start "$pg_dir"); then
    export KUMO_TEST_POSTGRES="$url"
elif [ "$(id -u)" = 0 ]; then
    echo "PostgreSQL could not be started (see $pg_dir/log)" >&2
    exit 1
fi
cargo test --workspace "$@"
