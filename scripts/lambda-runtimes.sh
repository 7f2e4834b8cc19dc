#!/usr/bin/env bash
# Installs the runtimes kumo gives Lambda functions into DIR (default: target/lambda-runtimes),
# for `kumo serve --lambda-runtimes DIR`:
#   DIR/python3: AWS's Python runtime interface client (awslambdaric, from PyPI), built for the
#                machine's /usr/bin/python3, the interpreter execution environments see, and
#                boto3, which Lambda's Python runtimes include too.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-target/lambda-runtimes}"
python=/usr/bin/python3
if [ ! -x "$python" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 >/dev/null
fi
if [ ! -x "$python" ]; then
    echo "no $python: python3 Lambda functions cannot run here (install Debian's python3)" >&2
    exit 1
fi
version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if PYTHONPATH="$dir/python3" "$python" -c 'import awslambdaric.bootstrap, boto3' >/dev/null 2>&1; then
    exit 0
fi
# pip from whichever python3 has it, fetching wheels for the interpreter inside the sandbox.
pip_python=python3
"$pip_python" -m pip --version >/dev/null 2>&1 || pip_python="$python"
rm -rf "$dir/python3.tmp"
"$pip_python" -m pip install --quiet --root-user-action=ignore --target "$dir/python3.tmp" \
    --python-version "$version" --implementation cp --only-binary=:all: \
    --platform "manylinux2014_$(uname -m)" 'awslambdaric>=3,<5' boto3
chmod -R a+rX "$dir/python3.tmp"
rm -rf "$dir/python3"
mv "$dir/python3.tmp" "$dir/python3"
echo "awslambdaric and boto3 installed for python $version in $dir/python3"
