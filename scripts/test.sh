#!/usr/bin/env bash
# Runs Nimbus's whole test suite on a fresh Debian machine (as root) or in CI:
# installs what the tests need (only what is missing), builds the workspace, runs the
# Rust tests, then the end-to-end tests that drive a real `nimbus server` with the real
# AWS CLI v1 and boto3 from a private venv (.venv-test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export DEBIAN_FRONTEND=noninteractive

step() { printf '\n==> %s\n' "$*"; }

# --- system packages (only if missing) --------------------------------------------------
APT_UPDATED=0
apt_install() {
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    step "installing Debian packages: $*"
    if [ "$APT_UPDATED" = 0 ]; then
        "${sudo[@]}" apt-get update -qq
        APT_UPDATED=1
    fi
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" </dev/null
}
missing=()
if ! command -v python3 >/dev/null 2>&1; then
    missing+=(python3 python3-venv python3-pip)
else
    # Debian's python3 needs python3-venv for a working `python3 -m venv` (ensurepip).
    if [ "$(command -v python3)" = /usr/bin/python3 ]; then
        dpkg -s python3-venv >/dev/null 2>&1 || missing+=(python3-venv)
    else
        python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
    fi
    python3 -m pip --version >/dev/null 2>&1 || dpkg -s python3-pip >/dev/null 2>&1 || missing+=(python3-pip)
fi
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v zip >/dev/null 2>&1 || missing+=(zip)
command -v unzip >/dev/null 2>&1 || missing+=(unzip)
# pgrep (the container sandbox tests look for processes a function left behind).
command -v pgrep >/dev/null 2>&1 || missing+=(procps)
# Container images are built from busybox-static; the registry is driven by skopeo and
# podman (ECR issue), as a user would.
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v podman >/dev/null 2>&1 || missing+=(podman)
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
fi

# --- Python venv with the real AWS clients ------------------------------------------------
VENV=$ROOT/.venv-test
PY_PACKAGES=(awscli boto3 pytest pytest-xdist pytest-timeout awslambdaric)
venv_ok() {
    [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/aws" ] &&
        "$VENV/bin/python" -c 'import awscli, boto3, pytest, xdist, pytest_timeout, awslambdaric' >/dev/null 2>&1 &&
        "$VENV/bin/aws" --version >/dev/null 2>&1
}
if ! venv_ok; then
    step "creating $VENV"
    if ! python3 -m venv --clear "$VENV"; then
        apt_install python3-venv
        python3 -m venv --clear "$VENV"
    fi
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --progress-bar off "${PY_PACKAGES[@]}" </dev/null
    venv_ok || { echo "venv $VENV is incomplete after install" >&2; exit 1; }
fi

# --- build and Rust tests -----------------------------------------------------------------
step "cargo build --workspace --locked"
cargo build --workspace --locked
step "cargo test --workspace --locked"
cargo test --workspace --locked

# --- end-to-end tests -----------------------------------------------------------------------
step "end-to-end tests (tests/e2e)"
export PATH="$VENV/bin:$PATH"
export AWS_MAX_ATTEMPTS=1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
    AWS_DEFAULT_REGION=us-east-1 AWS_PAGER="" AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL || true
export NIMBUS_BIN=${NIMBUS_BIN:-$ROOT/target/debug/nimbus}
export RUST_ECHO_BIN=${RUST_ECHO_BIN:-$ROOT/target/debug/rust-echo}
"$VENV/bin/python" -m pytest tests/e2e -n 2 -q -p no:cacheprovider --timeout 180 "$@"
