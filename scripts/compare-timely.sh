#!/usr/bin/env bash
# Same-run comparison of troupe's exchange channels with the published
# timely_communication crate (compare/timely, not a workspace member).
# Runs both benchmarks interleaved, ROUNDS times per configuration
# (2 threads in one process; 2 processes of 1 worker), and prints the
# medians and their ratios.
# usage: scripts/compare-timely.sh [MESSAGES] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-10000000}
rounds=${2:-3}
cargo build --release -q -p troupe-program --bin exchange
cargo build --release -q --manifest-path compare/timely/Cargo.toml
ours=target/release/exchange
theirs=compare/timely/target/release/compare-timely

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }

for cfg in "--workers=2 --processes=1" "--workers=1 --processes=2"; do
  : > /tmp/cmp-ours.txt; : > /tmp/cmp-theirs.txt
  for _ in $(seq "$rounds"); do
    $ours $cfg --messages="$messages" >> /tmp/cmp-ours.txt
    $theirs $cfg --messages="$messages" >> /tmp/cmp-theirs.txt
  done
  o_tp=$(grep '^exchange ' /tmp/cmp-ours.txt | field msgs_per_s | median)
  t_tp=$(grep '^timely ' /tmp/cmp-theirs.txt | field msgs_per_s | median)
  o_pp=$(grep '^exchange ' /tmp/cmp-ours.txt | field pingpong_us | median)
  t_pp=$(grep '^timely ' /tmp/cmp-theirs.txt | field pingpong_us | median)
  o_rss=$(grep '^exchange-process' /tmp/cmp-ours.txt | field peak_rss_mib | sort -g | tail -1)
  t_rss=$(grep '^timely-process' /tmp/cmp-theirs.txt | field peak_rss_mib | sort -g | tail -1)
  o_con=$(grep '^exchange-process' /tmp/cmp-ours.txt | field connect_ms | median)
  t_con=$(grep '^timely-process' /tmp/cmp-theirs.txt | field initialize_ms | median)
  echo "config $cfg messages=$messages medians of $rounds"
  echo "  troupe: msgs_per_s=$o_tp pingpong_us=$o_pp peak_rss_mib=$o_rss setup_ms=$o_con"
  echo "  timely: msgs_per_s=$t_tp pingpong_us=$t_pp peak_rss_mib=$t_rss setup_ms=$t_con"
  awk -v a="$o_tp" -v b="$t_tp" -v c="$o_pp" -v d="$t_pp" -v e="$o_rss" -v f="$t_rss" \
    'BEGIN { printf "  ratio troupe/timely: throughput=%.2fx pingpong_latency=%.2fx peak_memory=%.2fx\n", a/b, c/d, e/f }'
done
