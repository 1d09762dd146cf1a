#!/usr/bin/env bash
# Stops the Ceph daemons scripts/rgw-up.sh started in DIR (default /tmp/liverestore-rgw),
# by their pid files: TERM, then KILL for what is still there half a second later.
D=${1:-/tmp/liverestore-rgw}
pids=()
for f in "$D"/run/*.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  # Only a Ceph daemon: a stale pid file may name a process that reused the number.
  case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
    ceph-mon | ceph-osd | radosgw) kill "$pid" 2>/dev/null && pids+=("$pid") ;;
  esac
done
if [ "${#pids[@]}" -gt 0 ]; then
  sleep 0.5
  for pid in "${pids[@]}"; do
    case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
      ceph-mon | ceph-osd | radosgw) kill -9 "$pid" 2>/dev/null ;;
    esac
  done
fi
rm -f "$D"/run/*.pid "$D"/s3.env
true
