#!/usr/bin/env bash
# Copies the troupe programs to the ssh hosts of a hosts file, and starts or
# stops them there by hand.
#
#   scripts/deploy.sh copy  HOSTS        build (release) and copy replica and bench_client to every
#                                        `ssh` host of HOSTS, into $TROUPE_REMOTE_DIR (default troupe/bin)
#   scripts/deploy.sh start HOSTS [R]    start R replicas (default: one per replicas line) and the
#                                        client host where a sweep would place them, with the token
#                                        in $TROUPE_TOKEN (sent on standard input, never on a command
#                                        line); prints HOSTS with `running` in place of `ssh ...`
#   scripts/deploy.sh stop  HOSTS        stop what `start` started, by the pids it recorded
#
# A sweep given HOSTS as it is (`troupe-run --hosts HOSTS`) starts and stops
# the programs over ssh itself, with a fresh token per sweep; `start` is for
# programs that should outlive a sweep (then pass the printed hosts file and
# the same TROUPE_TOKEN to troupe-run).
#
# Placement matches troupe-run: replica i on replicas host i mod n, control
# port 7000 + 2*(i div n), data port one above; the client host on the first
# clients host, control port 7100.
set -euo pipefail

cmd=${1:-}
hosts=${2:-}
if [ -z "$cmd" ] || [ -z "$hosts" ] || [ ! -f "$hosts" ]; then
  sed -n '2,21p' "$0" >&2
  exit 2
fi
dir=${TROUPE_REMOTE_DIR:-troupe/bin}
ssh_opts=(-o BatchMode=yes)

# "role address launch target" for every host line, comments dropped.
lines() { sed -e 's/#.*//' "$hosts" | awk 'NF > 0 { print $1, $2, $3, $4 }'; }
ssh_targets() { lines | awk '$3 == "ssh" { print $4 }' | sort -u; }

case "$cmd" in
copy)
  root=$(cd "$(dirname "$0")/.." && pwd)
  (cd "$root" && cargo build --release -p troupe-program --bin replica --bin bench_client)
  for target in $(ssh_targets); do
    echo "copying to $target:$dir"
    ssh "${ssh_opts[@]}" "$target" "mkdir -p $dir"
    scp "${ssh_opts[@]}" -q "$root/target/release/replica" "$root/target/release/bench_client" "$target:$dir/"
  done
  ;;
start)
  : "${TROUPE_TOKEN:?set TROUPE_TOKEN to the token the programs should accept}"
  mapfile -t replica_hosts < <(lines | awk '$1 ~ /^replicas?$/')
  mapfile -t client_hosts < <(lines | awk '$1 ~ /^clients?$/')
  n=${#replica_hosts[@]}
  if [ "$n" -eq 0 ] || [ "${#client_hosts[@]}" -eq 0 ]; then
    echo "deploy.sh: $hosts needs a replicas line and a clients line" >&2
    exit 1
  fi
  count=${3:-$n}
  # start TARGET BINARY ADDRESS:PORT
  start() {
    ssh "${ssh_opts[@]}" "$1" "cd $dir && read -r TROUPE_TOKEN && export TROUPE_TOKEN && \
      { nohup ./$2 --control $3 > $2-${3##*:}.log 2>&1 < /dev/null & echo \$! > $2-${3##*:}.pid; }" \
      <<<"$TROUPE_TOKEN"
  }
  for ((i = 0; i < count; i++)); do
    read -r _ addr launch target <<<"${replica_hosts[i % n]}"
    port=$((7000 + 2 * (i / n)))
    if [ "$launch" != ssh ]; then
      echo "deploy.sh: replica $i goes to $addr, which is not an ssh host" >&2
      exit 1
    fi
    start "$target" replica "$addr:$port"
  done
  read -r _ addr launch target <<<"${client_hosts[0]}"
  if [ "$launch" != ssh ]; then
    echo "deploy.sh: the client host $addr is not an ssh host" >&2
    exit 1
  fi
  start "$target" bench_client "$addr:7100"
  lines | awk '{ print $1, $2, ($3 == "ssh" ? "running" : $3 " " $4) }'
  ;;
stop)
  for target in $(ssh_targets); do
    ssh "${ssh_opts[@]}" "$target" "cd $dir && for f in *.pid; do [ -f \"\$f\" ] || continue; \
      kill \"\$(cat \"\$f\")\" 2>/dev/null; rm -f \"\$f\"; done"
  done
  ;;
*)
  sed -n '2,21p' "$0" >&2
  exit 2
  ;;
esac
