#!/usr/bin/env bash
# The consent engine's cost: the same load run (patients with a handful of Consents each,
# measured as the professional they authorise) against `carnet serve` with the patient's
# rules applied, then with the allow-all decision point (--bench-allow-all). Every request
# is traced in both. Usage: tools/bench-consent.sh [PATIENTS] [SECONDS] [CONSENTS]
# On PostgreSQL: CARNET_BENCH_DATABASE=postgres://… (the database is emptied first).
# CARNET_BENCH_NO_BUILD=1 uses the release binaries as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
patients=${1:-5000}
seconds=${2:-10}
consents=${3:-4}
[ -n "${CARNET_BENCH_NO_BUILD:-}" ] || cargo build --release -q -p carnet -p carnet-bench
for mode in rules allow-all; do
    dir=$(mktemp -d)
    extra=()
    [ "$mode" = allow-all ] && extra=(--bench-allow-all)
    if [ -n "${CARNET_BENCH_DATABASE:-}" ]; then
        psql -q "$CARNET_BENCH_DATABASE" -c 'DROP SCHEMA public CASCADE; CREATE SCHEMA public;'
        extra+=(--database-url "$CARNET_BENCH_DATABASE")
    fi
    ./target/release/carnet serve --dev --listen 127.0.0.1:18080 --data-dir "$dir" "${extra[@]}" \
        >"$dir/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:18080/fhir/metadata && break; sleep 0.1; done
    echo "## consent engine: $mode"
    ./target/release/carnet-bench --base-url http://127.0.0.1:18080/fhir \
        --token "$(./target/release/carnet dev-token --system --data-dir "$dir" | tail -1)" \
        --reader-token "$(./target/release/carnet dev-token --practitioner bench-reader --data-dir "$dir" | tail -1)" \
        --consents "$consents" --data-dir "$dir" --patients "$patients" --seconds "$seconds" \
        --only read-document,read,documents,documents-include --server-pid "$pid"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
done
