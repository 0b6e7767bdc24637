#!/usr/bin/env bash
# Emulates N separate hosts on one Linux machine with network namespaces:
# each host is a namespace with its own address on a bridge, a multicast
# route, and loopback up. This machine reaches them through the bridge, so
# a sweep here can drive programs there. Needs root (or CAP_NET_ADMIN).
#
#   scripts/netns.sh up N [PREFIX] [SUBNET]   create PREFIXh1..PREFIXhN on SUBNET.1..N,
#                                             print a hosts file for troupe-run
#   scripts/netns.sh down [PREFIX]            remove them (and the bridge)
#
# PREFIX (default "troupe", at most 8 characters) names the namespaces
# (PREFIXh1, ...), the bridge (PREFIXbr) and the links. SUBNET is the first
# three octets of a /24 (default 10.77.0); this machine takes SUBNET.254.
# Traffic stays on this machine: the bridge has no uplink.
#
# Example:
#   scripts/netns.sh up 3 > /tmp/hosts && cargo run --release -p troupe-run -- --hosts /tmp/hosts
#   scripts/netns.sh down
set -euo pipefail

cmd=${1:-}
case "$cmd" in
up)
  n=${2:?usage: netns.sh up N [PREFIX] [SUBNET]}
  prefix=${3:-troupe}
  subnet=${4:-10.77.0}
  ;;
down)
  prefix=${2:-troupe}
  ;;
*)
  sed -n '2,20p' "$0" >&2
  exit 2
  ;;
esac
if [ ${#prefix} -gt 8 ]; then
  echo "netns.sh: prefix $prefix is longer than 8 characters (interface names are limited)" >&2
  exit 2
fi
bridge=${prefix}br

down() {
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^${prefix}h[0-9]+$" || true); do
    ip netns del "$ns" || true
  done
  # Deleting a namespace frees its veth pair only eventually; do it now.
  for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^${prefix}v[0-9]+$" || true); do
    ip link del "$link" 2>/dev/null || true
  done
  if ip link show "$bridge" >/dev/null 2>&1; then
    ip link del "$bridge"
  fi
}

if [ "$cmd" = down ]; then
  down
  exit 0
fi

if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 250 ]; then
  echo "netns.sh: N must be 1..250" >&2
  exit 2
fi
if ip -4 addr show | grep -q "inet ${subnet}\."; then
  echo "netns.sh: ${subnet}.0/24 is already in use on this machine; pick another SUBNET" >&2
  exit 1
fi
trap 'down' ERR

ip link add "$bridge" type bridge
ip addr add "${subnet}.254/24" dev "$bridge"
ip link set "$bridge" up
for i in $(seq 1 "$n"); do
  ns=${prefix}h$i
  ip netns add "$ns"
  ip link add "${prefix}v$i" type veth peer name "${prefix}p$i"
  ip link set "${prefix}v$i" master "$bridge" up
  ip link set "${prefix}p$i" netns "$ns"
  ip -n "$ns" link set "${prefix}p$i" name eth0
  ip -n "$ns" addr add "${subnet}.$i/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  # Multicast leaves through the bridge link, not a missing default route.
  ip -n "$ns" route add 224.0.0.0/4 dev eth0
done

echo "# $n hosts in network namespaces (scripts/netns.sh down ${prefix} removes them)"
for i in $(seq 1 "$n"); do
  if [ "$n" -eq 1 ]; then
    echo "replicas ${subnet}.1 netns ${prefix}h1"
    echo "clients ${subnet}.1 netns ${prefix}h1"
  elif [ "$i" -lt "$n" ]; then
    echo "replicas ${subnet}.$i netns ${prefix}h$i"
  else
    echo "clients ${subnet}.$i netns ${prefix}h$i"
  fi
done
