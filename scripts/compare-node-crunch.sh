#!/usr/bin/env bash
# Same-run comparison of troupe's crunch against the published node_crunch
# 0.1.0 on one Mandelbrot job (1024x1024, 64x64 tiles, heartbeat 1 s, same
# kernel, nodes as processes on loopback). Each scenario runs both, one
# after the other, RUNS times; the summary uses medians.
#
#   scripts/compare-node-crunch.sh [RUNS]     (default 3)
#
# The node_crunch crate is built here only (compare/node_crunch is not a
# workspace member, so CI never compiles it).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
cargo build --release -q -p troupe-program --bin crunch
CARGO_TARGET_DIR=target/compare cargo build --release -q \
    --manifest-path compare/node_crunch/Cargo.toml
OURS=target/release/crunch
THEIRS=target/compare/release/node-crunch-compare
JOB=(--size 1024 --tile 64)

# value KEY LINE: the number after KEY= in LINE.
value() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

declare -A SAMPLES
# scenario NAME ARGS...: runs both RUNS times, keeps their final lines.
scenario() {
    local name=$1; shift
    for ((r = 1; r <= RUNS; r++)); do
        local ours theirs
        ours=$("$OURS" mandelbrot "${JOB[@]}" --heartbeat-ms 1000 "$@" 2>/dev/null | tail -2)
        theirs=$("$THEIRS" mandelbrot "${JOB[@]}" --heartbeat 1 "$@" 2>/dev/null | tail -1)
        echo "[$name run $r] $(tail -1 <<<"$ours")"
        echo "[$name run $r] $(head -1 <<<"$ours" | sed 's/^crunch /crunch: /')"
        echo "[$name run $r] $theirs"
        for key in wall_s compute_s detect_ms nodes_exit_ms wall_over_ideal reassigned; do
            SAMPLES[$name.ours.$key]+="$(value $key "$(tr '\n' ' ' <<<" $ours")") "
            SAMPLES[$name.theirs.$key]+="$(value $key " $theirs") "
        done
        SAMPLES[$name.theirs.pixels_s]+="$(value pixels_s " $theirs") "
    done
}
med() { tr ' ' '\n' <<<"${SAMPLES[$1]}" | grep . | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }

scenario n1 --nodes 1
scenario n2 --nodes 2
scenario kill --nodes 2 --max-iter 8192 --kill-node-after 1
scenario stall --nodes 2 --max-iter 8192 --stall-node-after 1

echo
for s in n1 n2 kill stall; do
    echo "$s: wall_s ours=$(med $s.ours.wall_s) node_crunch=$(med $s.theirs.wall_s)" \
        "(ratio $(ratio "$(med $s.ours.wall_s)" "$(med $s.theirs.wall_s)"))," \
        "node_crunch pixels_s=$(med $s.theirs.pixels_s)," \
        "ours wall_over_ideal=$(med $s.ours.wall_over_ideal)," \
        "detect_ms ours=$(med $s.ours.detect_ms) node_crunch=$(med $s.theirs.detect_ms)," \
        "nodes_exit_ms ours=$(med $s.ours.nodes_exit_ms) node_crunch=$(med $s.theirs.nodes_exit_ms)"
done
echo "summary crunch/node_crunch wall ratios (lower is better):" \
    "1 node $(ratio "$(med n1.ours.wall_s)" "$(med n1.theirs.wall_s)")," \
    "2 nodes $(ratio "$(med n2.ours.wall_s)" "$(med n2.theirs.wall_s)")," \
    "node killed $(ratio "$(med kill.ours.wall_s)" "$(med kill.theirs.wall_s)")," \
    "node frozen $(ratio "$(med stall.ours.wall_s)" "$(med stall.theirs.wall_s)");" \
    "detection $(med kill.ours.detect_ms)/$(med kill.theirs.detect_ms) ms killed," \
    "$(med stall.ours.detect_ms)/$(med stall.theirs.detect_ms) ms frozen;" \
    "nodes exit $(med n2.ours.nodes_exit_ms)/$(med n2.theirs.nodes_exit_ms) ms after the end"
