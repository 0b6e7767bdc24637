#!/usr/bin/env bash
# PBFT (4 replicas) against unreplicated, in one sweep on this machine:
# peak throughput, p50/p99 latency, CPU used by all programs, and the
# ratio of peaks. Runs alternate between protocols so that load from
# anything else on the machine hits both alike.
#   scripts/pbft-compare.sh [REPS] [SECONDS]
set -euo pipefail
reps=${1:-2}
secs=${2:-4}
cd "$(dirname "$0")/.."
cargo build --release -p troupe-run -p troupe-program --quiet
out=results/pbft-compare.txt
mkdir -p results
: > "$out"
for rep in $(seq "$reps"); do
  for clients in 10 100 400; do
    for cfg in "unreplicated" "pbft --batch 64 --client-auth mac" "pbft --batch 64 --client-auth signature"; do
      log=$(mktemp)
      ./target/release/troupe-run bench --protocol $cfg --clients "$clients" \
        --duration "$secs" --csv results/pbft-compare.csv > "$log" 2>&1 || true
      # CPU: the mean of each program's per-second "cpu N%" reports, summed.
      cpu=$(awk '/ cpu [0-9]+%/ { for (i = 1; i <= NF; i++) if ($i == "cpu") { v = $(i+1); sub("%", "", v); s[$1] += v; n[$1]++ } }
                 END { t = 0; for (k in s) t += s[k] / n[k]; printf "%.0f", t }' "$log")
      auth=$(echo "$cfg" | sed -n 's/.*--client-auth \([a-z]*\).*/ auth=\1/p')
      echo "$(tail -1 "$log")${auth} cpu_total=${cpu}%" | tee -a "$out"
      rm -f "$log"
    done
  done
done
# Peak throughput per configuration, and the ratio to unreplicated's.
awk '
  { split($0, a, ":"); name = a[1]; sub(/ clients=[0-9]+/, "", name);
    if (match($0, / auth=[a-z]+/)) name = name substr($0, RSTART, RLENGTH);
    match($0, /: [0-9]+ ops\/s/); ops = substr($0, RSTART + 2, RLENGTH - 8) + 0;
    if (ops > peak[name]) { peak[name] = ops; line[name] = $0 } }
  END { base = 0; for (k in peak) if (k ~ /^unreplicated/) base = peak[k];
        for (k in peak) printf "peak %s -> %s (%.3f of unreplicated)\n", k, line[k], base ? peak[k] / base : 0 }' "$out" | tee -a "$out"
