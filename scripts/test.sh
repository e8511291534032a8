#!/usr/bin/env bash
# Run Tern's whole test suite on a fresh Debian machine (as root).
#
#   scripts/test.sh [extra cargo-nextest args...]
#
# Installs what is missing (cmake, cargo-nextest, the SecantusDB MongoDB
# stand-in, PostgreSQL), starts a throwaway stand-in (and, if no PostgreSQL is
# listening on 127.0.0.1:5432, a throwaway PostgreSQL cluster) on free loopback
# ports, runs `cargo nextest run` and the doc tests, then stops and removes
# everything it started, even when tests fail.
#
# Environment exported to the tests:
#   TERN_TEST_MONGODB_URI   mongodb://127.0.0.1:PORT/ (the stand-in)
#   TERN_TEST_MONGODB_URI_2 a second, independent stand-in (multi-deployment queue)
#   TERN_TEST_SECANTUSD     absolute path of secantusd-rs (tests that start
#                           and stop their own stand-ins use it)
#   TERN_TEST_POSTGRES_URL  postgres://postgres@127.0.0.1:PORT/postgres
#   TERN_TEST_SMPPLIB_PYTHON  a Python with smpplib (the simulator's interop test);
#                           node-smpp is installed in smsc-connector/tests/interop/node
#
# Knobs:
#   TERN_TEST_STRESS=1         run the 60-second stress run even when
#                              nextest arguments are given (it runs by
#                              default only when none are)
#   TERN_TEST_FORCE_TEMP_PG=1  always start a temporary PostgreSQL cluster,
#                              even if one answers on 127.0.0.1:5432
#   NEXTEST_PROFILE=ci         nextest profile (see .config/nextest.toml)
#
# Hidden mode used to check the service plumbing without building anything:
#   scripts/test.sh --services-only -- CMD [ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."

SECANTUS_VERSION="0.5.3-beta.196"
START_SECONDS=$SECONDS

SERVICES_ONLY=0
if [[ "${1:-}" == "--services-only" ]]; then
    SERVICES_ONLY=1
    shift
    [[ "${1:-}" == "--" ]] && shift
    if [[ $# -eq 0 ]]; then
        echo "usage: scripts/test.sh --services-only -- CMD [ARGS...]" >&2
        exit 2
    fi
fi

step() { echo "==> $*"; }
die() { echo "ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup
TMP_DIRS=()
SECANTUS_PIDS=()
CHILD_PID=""
PG_BIN=""
PG_DATA=""
CLEANED=0

cleanup() {
    local rc=$?
    [[ $CLEANED -eq 1 ]] && return 0
    CLEANED=1
    trap - EXIT INT TERM
    set +e
    local i
    if [[ -n "$CHILD_PID" ]] && kill -0 "$CHILD_PID" 2>/dev/null; then
        echo "==> interrupted: stopping the test run (pid $CHILD_PID)" >&2
        kill -TERM "$CHILD_PID" 2>/dev/null
        for ((i = 0; i < 100; i++)); do
            kill -0 "$CHILD_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$CHILD_PID" 2>/dev/null
        wait "$CHILD_PID" 2>/dev/null
    fi
    local pid
    for pid in "${SECANTUS_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || continue
        echo "==> stopping MongoDB stand-in (pid $pid)"
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "==> stand-in did not stop within 10 s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    done
    if [[ -n "$PG_DATA" && -f "$PG_DATA/postmaster.pid" ]]; then
        echo "==> stopping temporary PostgreSQL cluster"
        runuser -u postgres -- "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 30 >/dev/null 2>&1 \
            || runuser -u postgres -- "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate -w >/dev/null 2>&1
    fi
    local d
    for d in "${TMP_DIRS[@]}"; do
        [[ -n "$d" && -d "$d" ]] && rm -rf -- "$d"
    done
    echo "==> done in $((SECONDS - START_SECONDS)) s (exit $rc)"
    exit "$rc"
}
# cleanup runs on EXIT; INT/TERM exit with the conventional 128+signal code,
# which runs it too.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers
APT_UPDATED=0
apt_install() {
    if [[ $APT_UPDATED -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Runs a command in the background and waits for it, so that a SIGTERM/SIGINT
# to this script runs the cleanup at once (which then stops the command too)
# instead of waiting for the command to finish.
run_child() {
    local r=0
    "$@" &
    CHILD_PID=$!
    wait "$CHILD_PID" || r=$?
    CHILD_PID=""
    return "$r"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- installs
if ! command -v python3 >/dev/null 2>&1; then
    step "installing python3 (apt)"
    apt_install python3
fi

if ! command -v cmake >/dev/null 2>&1; then
    step "installing cmake (apt)"
    apt_install cmake
fi

if [[ $SERVICES_ONLY -eq 0 ]] && ! cargo nextest --version >/dev/null 2>&1; then
    step "installing cargo-nextest (cargo install, a few minutes)"
    cargo install cargo-nextest --locked --quiet
fi

CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
case ":$PATH:" in *":$CARGO_BIN:"*) ;; *) export PATH="$CARGO_BIN:$PATH" ;; esac

if ! command -v secantusd-rs >/dev/null 2>&1; then
    step "installing secantus-mdb $SECANTUS_VERSION (cargo install, about 8 minutes)"
    if ! cargo install secantus-mdb --version "$SECANTUS_VERSION" \
            --ignore-rust-version --locked --quiet; then
        step "retrying secantus-mdb install without --locked"
        cargo install secantus-mdb --version "$SECANTUS_VERSION" \
            --ignore-rust-version --quiet
    fi
fi
SECANTUSD="$(command -v secantusd-rs)" || die "secantusd-rs not found after install"

# ---------------------------------------------------------------- third-party SMPP peers
# node-smpp (npm) plays the SMSC for the connector, smpplib (PyPI) the ESME
# for the simulator: the interoperability tests need both.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    step "installing nodejs and npm (apt)"
    apt_install nodejs npm
fi
NODE_SMPP_DIR=smsc-connector/tests/interop/node
if [[ ! -d $NODE_SMPP_DIR/node_modules/smpp ]] \
        || [[ $NODE_SMPP_DIR/package-lock.json -nt $NODE_SMPP_DIR/node_modules/.package-lock.json ]]; then
    step "installing node-smpp (npm ci, from the committed lockfile)"
    (cd "$NODE_SMPP_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci failed in $NODE_SMPP_DIR"
fi
SMPPLIB_VENV="${TERN_TEST_SMPPLIB_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/tern/smpplib-venv}"
if ! "$SMPPLIB_VENV/bin/python" -c 'import smpplib' >/dev/null 2>&1; then
    step "installing smpplib (pip, in $SMPPLIB_VENV)"
    if ! python3 -m venv "$SMPPLIB_VENV" >/dev/null 2>&1; then
        apt_install python3-venv
        python3 -m venv "$SMPPLIB_VENV"
    fi
    "$SMPPLIB_VENV/bin/pip" install --quiet -r smsc-connector/tests/interop/python/requirements.txt \
        || die "pip could not install smpplib"
fi
export TERN_TEST_SMPPLIB_PYTHON="$SMPPLIB_VENV/bin/python"

# ---------------------------------------------------------------- MongoDB stand-ins
# start_standin NAME: starts one stand-in on a free port; sets STANDIN_PORT.
start_standin() {
    local name=$1 dir log port pid attempt i
    dir="$(mktemp -d -t "tern-$name.XXXXXX")"
    TMP_DIRS+=("$dir")
    log="$dir/secantusd.log"
    STANDIN_PORT=""
    for attempt in 1 2 3; do
        port="$(free_port)"
        step "starting MongoDB stand-in '$name' on 127.0.0.1:$port (attempt $attempt)"
        rm -rf "$dir/data"
        : >"$log"
        "$SECANTUSD" --host 127.0.0.1 --port "$port" --storage-path "$dir/data" \
            --sync-on-commit --log-file-max 16MB \
            >>"$log" 2>&1 </dev/null &
        pid=$!
        SECANTUS_PIDS+=("$pid")
        for ((i = 0; i < 300; i++)); do
            if port_open "$port"; then STANDIN_PORT=$port; return 0; fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "ERROR: MongoDB stand-in did not accept connections within 30 s; log tail:" >&2
            tail -n 40 "$log" >&2 || true
            exit 1
        fi
        wait "$pid" 2>/dev/null || true
        echo "WARNING: MongoDB stand-in exited during startup; log tail:" >&2
        tail -n 20 "$log" >&2 || true
    done
    echo "ERROR: could not start the MongoDB stand-in '$name'; log tail:" >&2
    tail -n 40 "$log" >&2 || true
    exit 1
}
start_standin mongo
MONGO_PORT=$STANDIN_PORT
# A second, independent deployment: the queue's multi-deployment (Starling/Kestrel) tests.
start_standin mongo2
export TERN_TEST_MONGODB_URI_2="mongodb://127.0.0.1:$STANDIN_PORT/"
export TERN_TEST_MONGODB_URI="mongodb://127.0.0.1:$MONGO_PORT/"
export TERN_TEST_SECANTUSD="$SECANTUSD"

# ---------------------------------------------------------------- PostgreSQL
if [[ "${TERN_TEST_FORCE_TEMP_PG:-0}" != "1" ]] \
        && command -v pg_isready >/dev/null 2>&1 \
        && pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
    step "using PostgreSQL already listening on 127.0.0.1:5432"
    export TERN_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/postgres"
else
    find_pg_bin() {
        local d
        for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
            [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && { echo "$d"; return 0; }
        done
        return 1
    }
    if ! PG_BIN="$(find_pg_bin)"; then
        step "installing postgresql (apt)"
        apt_install postgresql
        PG_BIN="$(find_pg_bin)" || die "initdb not found under /usr/lib/postgresql/*/bin after install"
    fi
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/false postgres
    # Under /tmp (not $TMPDIR) so the postgres user can reach it.
    PG_TMP="$(mktemp -d /tmp/tern-pg.XXXXXX)"
    TMP_DIRS+=("$PG_TMP")
    chown postgres: "$PG_TMP"
    PG_DATA="$PG_TMP/data"
    PG_PORT="$(free_port)"
    step "starting temporary PostgreSQL cluster on 127.0.0.1:$PG_PORT"
    (cd / && runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres \
        --no-sync >"$PG_TMP/initdb.log" 2>&1) \
        || { tail -n 40 "$PG_TMP/initdb.log" >&2; die "initdb failed"; }
    (cd / && runuser -u postgres -- "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_TMP/postgres.log" -w -t 30 \
        -o "-p $PG_PORT -k $PG_TMP -c listen_addresses=127.0.0.1 -c fsync=off" >/dev/null 2>&1) \
        || { tail -n 40 "$PG_TMP/postgres.log" >&2; die "temporary PostgreSQL did not start"; }
    for ((i = 0; i < 300; i++)); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
        sleep 0.1
    done
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" \
        || { tail -n 40 "$PG_TMP/postgres.log" >&2; die "temporary PostgreSQL not ready after 30 s"; }
    export TERN_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
fi

echo "    TERN_TEST_MONGODB_URI=$TERN_TEST_MONGODB_URI"
echo "    TERN_TEST_SECANTUSD=$TERN_TEST_SECANTUSD"
echo "    TERN_TEST_POSTGRES_URL=$TERN_TEST_POSTGRES_URL"
echo "    TERN_TEST_SMPPLIB_PYTHON=$TERN_TEST_SMPPLIB_PYTHON"

# ---------------------------------------------------------------- tests
rc=0
if [[ $SERVICES_ONLY -eq 1 ]]; then
    step "running: $*"
    run_child "$@" || rc=$?
else
    # Doc tests first, so the last summary line is nextest's (CI reads it).
    step "cargo test --workspace --doc"
    run_child cargo test --workspace --doc || rc=$?
    # The 60-second stress run with chaos, unless the caller picked tests.
    # It fails on a broken invariant, never on speed; its report stays in
    # target/stress-ci.
    if [[ $# -eq 0 || "${TERN_TEST_STRESS:-}" == "1" ]]; then
        step "tern stress: 60 s, one process per role, chaos every 8 s"
        run_child cargo build -p tern || rc=$?
        run_child target/debug/tern stress --mode roles --duration 60s --chaos --chaos-every 8s \
            --rate 300 --drain 180s --out target/stress-ci || { r=$?; [[ $rc -eq 0 ]] && rc=$r; }
    fi
    step "cargo nextest run --workspace --all-targets --no-fail-fast $*"
    run_child cargo nextest run --workspace --all-targets --no-fail-fast "$@" || { r=$?; [[ $rc -eq 0 ]] && rc=$r; }
fi

if [[ $rc -ne 0 ]]; then
    for log in "${TMP_DIRS[@]/%//secantusd.log}"; do
        [[ -s "$log" ]] || continue
        echo "==> tests failed (exit $rc); last lines of $log:" >&2
        tail -n 20 "$log" >&2 || true
    done
fi
exit "$rc"
