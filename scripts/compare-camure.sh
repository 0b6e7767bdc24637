#!/usr/bin/env bash
# troupe's multicast sessions against the published camure crate (0.1.1),
# same machine, same run, same workloads and member counts; medians of
# REPS runs (default 3), interleaved so background load hits both alike.
#
#   scripts/compare-camure.sh            full comparison
#   QUICK=1 scripts/compare-camure.sh    fewer rounds and messages
#
# camure joins its multicast group on "any interface", so on loopback it
# needs 224.0.0.0/4 routed to lo. That route is made only inside a private
# network namespace this script creates (`unshare -n`), never on the
# machine's own table. troupe needs no route (it names the interface);
# both run in the same namespace so they see the same conditions. Needs
# root (or CAP_SYS_ADMIN + CAP_NET_ADMIN).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${COMPARE_CAMURE_INSIDE:-}" != 1 ]; then
  cargo build --release -p troupe-program --bin multicast
  cargo build --release --manifest-path compare/camure/Cargo.toml
  exec env COMPARE_CAMURE_INSIDE=1 unshare -n "$0" "$@"
fi

ip link set lo up
ip route add 224.0.0.0/4 dev lo
troupe=target/release/multicast
camure=compare/camure/target/release/camure-compare
reps=${REPS:-3}
if [ "${QUICK:-}" = 1 ]; then rounds=2000; small=20000; big=1000; else rounds=10000; small=50000; big=3000; fi

# median FIELD LINES...: the median of key=value field FIELD.
median() {
  local field=$1; shift
  printf '%s\n' "$@" | sed -n "s/.* $field=\([0-9.]*\).*/\1/p" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}

summary=()
run() { # run NAME FIELD HIGHER_IS_BETTER ARGS...
  local name=$1 field=$2 higher=$3; shift 3
  local t=() c=()
  for _ in $(seq 1 "$reps"); do
    t+=("$(timeout 300 "$troupe" "$@" | tail -1)")
    c+=("$(timeout 300 "$camure" "$@" | tail -1 || echo "failed $field=0")")
  done
  local tm cm ratio
  tm=$(median "$field" "${t[@]}")
  cm=$(median "$field" "${c[@]}")
  if [ "$higher" = 1 ]; then
    ratio=$(awk -v a="$tm" -v b="$cm" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }')
  else
    ratio=$(awk -v a="$tm" -v b="$cm" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "inf" }')
  fi
  echo "troupe ${t[*]: -1}"
  echo "camure ${c[*]: -1}"
  echo "compare $name troupe_$field=$tm camure_$field=$cm advantage=${ratio}x"
  summary+=("$name=${ratio}x")
}

for m in 2 4; do
  run "barrier/$m" mean_us 0 barrier --members "$m" --rounds "$rounds"
done
for m in 2 4; do
  run "broadcast/$m/64B" msgs_per_s 1 broadcast --members "$m" --size 64 --count "$small"
  run "broadcast/$m/1KiB" msgs_per_s 1 broadcast --members "$m" --size 1024 --count "$small"
  run "broadcast/$m/64KiB" msgs_per_s 1 broadcast --members "$m" --size 65536 --count "$big"
done
echo "summary (troupe over camure, medians of $reps, >1 is better): ${summary[*]}"
