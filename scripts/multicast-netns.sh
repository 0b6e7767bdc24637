#!/usr/bin/env bash
# Multicast sessions across emulated hosts: a coordinator and N members,
# each in a network namespace of its own with its own address on a
# bridge (scripts/netns.sh builds them), run barrier rounds and a checked
# broadcast. Everything happens inside a private network namespace this
# script creates (`unshare -n`), so the machine's own interfaces and
# routes are never touched. Needs root (or CAP_SYS_ADMIN + CAP_NET_ADMIN).
#
#   scripts/multicast-netns.sh [N]      N members (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-3}
if [ "${MULTICAST_NETNS_INSIDE:-}" != 1 ]; then
  cargo build --release -p troupe-program --bin multicast
  exec env MULTICAST_NETNS_INSIDE=1 unshare -n "$0" "$@"
fi

bin=target/release/multicast
prefix=tmc$$
prefix=${prefix:0:8}
subnet=10.79.0
ip link set lo up
scripts/netns.sh up $((n + 1)) "$prefix" "$subnet" >/dev/null
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  scripts/netns.sh down "$prefix"
}
trap cleanup EXIT

coordinator=${subnet}.1:7600
ip netns exec "${prefix}h1" "$bin" check-coordinator --members "$n" \
  --bind "$coordinator" --multicast 239.77.0.1:7601 &
coordinator_pid=$!
pids+=("$coordinator_pid")
member_pids=()
for i in $(seq 2 $((n + 1))); do
  ip netns exec "${prefix}h$i" "$bin" check-member --coordinator "$coordinator" &
  member_pids+=($!)
  pids+=($!)
done
status=0
for p in "${member_pids[@]}" "$coordinator_pid"; do
  wait "$p" || status=1
done
pids=()
if [ "$status" = 0 ]; then
  echo "multicast-netns: PASS ($n members on separate hosts)"
else
  echo "multicast-netns: FAIL"
fi
exit "$status"
