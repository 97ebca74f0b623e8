#!/usr/bin/env bash
# The access log must not slow reads as it grows: the same read load against a fresh
# database, then against one whose log already holds N rows (default 1,000,000), inserted
# before the server starts. Usage: tools/bench-trail.sh [PATIENTS] [SECONDS] [LOG_ROWS]
# On PostgreSQL: CARNET_BENCH_DATABASE=postgres://… (the database is emptied first).
# CARNET_BENCH_NO_BUILD=1 uses the release binaries as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
patients=${1:-2000}
seconds=${2:-10}
rows=${3:-1000000}
[ -n "${CARNET_BENCH_NO_BUILD:-}" ] || cargo build --release -q -p carnet -p carnet-bench
fill_sql() {
    # N traces of other patients' records (the shape of a professional's read).
    cat <<SQL
INSERT INTO access_log (id, recorded, patient, agent, client, event_type, interaction,
    action, outcome, entities, detail, labels)
SELECT 'fill-' || g, 1700000000000000 + g, 'filler-' || (g % 50000),
    'Practitioner/filler-' || (g % 500), 'bench', 'rest', 'read', 'R', '0',
    'DocumentReference/fill-doc-' || g, '{"p":"TREAT","d":"1 resource(s) of this record"}', ''
FROM $1;
INSERT INTO access_log_entity (reference, id)
SELECT 'Patient/filler-' || (g % 50000), 'fill-' || g FROM $1;
SQL
}
for fill in 0 "$rows"; do
    dir=$(mktemp -d)
    extra=()
    if [ -n "${CARNET_BENCH_DATABASE:-}" ]; then
        psql -q "$CARNET_BENCH_DATABASE" -c 'DROP SCHEMA public CASCADE; CREATE SCHEMA public;'
        extra+=(--database-url "$CARNET_BENCH_DATABASE")
    fi
    if [ "$fill" != 0 ]; then
        # Start once for the migrations, then fill the log with the server stopped.
        ./target/release/carnet serve --dev --listen 127.0.0.1:18080 --data-dir "$dir" "${extra[@]}" \
            >"$dir/server.log" 2>&1 &
        pid=$!
        for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:18080/fhir/metadata && break; sleep 0.1; done
        kill "$pid"; wait "$pid" 2>/dev/null || true
        if [ -n "${CARNET_BENCH_DATABASE:-}" ]; then
            fill_sql "generate_series(1, $fill) AS s(g)" | psql -q "$CARNET_BENCH_DATABASE"
            psql -q "$CARNET_BENCH_DATABASE" -c 'ANALYZE access_log; ANALYZE access_log_entity;'
        else
            fill_sql "(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < $fill) SELECT g FROM s)" \
                | python3 -c "import sqlite3,sys; db=sqlite3.connect(sys.argv[1]); db.executescript(sys.stdin.read()); db.commit()" "$dir/carnet.sqlite3"
        fi
    fi
    ./target/release/carnet serve --dev --listen 127.0.0.1:18080 --data-dir "$dir" "${extra[@]}" \
        >"$dir/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18080/fhir/metadata && break; sleep 0.1; done
    echo "## access log holding $fill rows before the run"
    ./target/release/carnet-bench --base-url http://127.0.0.1:18080/fhir \
        --token "$(./target/release/carnet dev-token --system --data-dir "$dir" | tail -1)" \
        --reader-token "$(./target/release/carnet dev-token --practitioner bench-reader --data-dir "$dir" | tail -1)" \
        --consents 4 --data-dir "$dir" --patients "$patients" --seconds "$seconds" \
        --only read-document,documents --server-pid "$pid"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
done
