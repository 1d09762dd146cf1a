#!/usr/bin/env bash
# Starts a throwaway single-node Ceph cluster with an S3 gateway on loopback: one monitor,
# one OSD on the memstore object store (RAM only, nothing on disk but config and logs),
# cephx auth (radosgw does not run with `auth none`) and radosgw serving S3 at
# http://127.0.0.1:$RGW_PORT with the user TESTAK / TESTSK. About 12 s on 2 cores.
#
# Usage: scripts/rgw-up.sh [DIR]          (default DIR /tmp/liverestore-rgw)
#   RGW_PORT      S3 port (default 7480)
#   RGW_MON_PORT  monitor port (default 3300)
# Needs Debian's radosgw, ceph-mon and ceph-osd packages. Stop it with scripts/rgw-down.sh DIR.
# On success prints the endpoint and writes DIR/s3.env (the variables tests read).
set -euo pipefail
D=$(realpath -m "${1:-/tmp/liverestore-rgw}")
RGW_PORT=${RGW_PORT:-7480}
RGW_MON_PORT=${RGW_MON_PORT:-3300}
for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph-authtool monmaptool ceph curl; do
  command -v "$tool" >/dev/null || { echo "rgw-up: $tool is missing (apt-get install -y radosgw ceph-mon ceph-osd)" >&2; exit 2; }
done
# A cluster left running in DIR is stopped first: its memstore data is gone with it anyway.
"$(dirname "$0")/rgw-down.sh" "$D"
mkdir -p "$D"
cd "$D"
rm -rf mon.a osd.0 run keyring mon.map ./*.log s3.env
mkdir -p run osd.0
fsid=$(cat /proc/sys/kernel/random/uuid)
# public/cluster addr keep the OSD on loopback; pool size 1 and chooseleaf 0 make one OSD enough.
cat > ceph.conf <<EOC
[global]
fsid = $fsid
keyring = $D/keyring
mon host = v2:127.0.0.1:$RGW_MON_PORT
public addr = 127.0.0.1
cluster addr = 127.0.0.1
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = 3221225472
mon data = $D/mon.\$id
osd data = $D/osd.\$id
log file = $D/\$name.log
run dir = $D/run
admin socket = $D/run/\$name.asok
pid file = $D/run/\$name.pid
ms bind msgr1 = false
EOC
ceph-authtool --create-keyring keyring --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool keyring --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
ceph-authtool keyring --gen-key -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' >/dev/null
ceph-authtool keyring --gen-key -n client.rgw.a --cap mon 'allow rw' --cap osd 'allow rwx' >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$RGW_MON_PORT]" --fsid "$fsid" mon.map >/dev/null
ceph-mon -c ceph.conf --mkfs -i a --monmap mon.map --keyring keyring
ceph-mon -c ceph.conf -i a
timeout 30 ceph -c ceph.conf osd create >/dev/null
ceph-osd -c ceph.conf -i 0 --mkfs >/dev/null 2>&1
ceph-osd -c ceph.conf -i 0 2>/dev/null
radosgw -c ceph.conf -n client.rgw.a --rgw-frontends "beast endpoint=127.0.0.1:$RGW_PORT"
up=0
for _ in $(seq 1 600); do
  if curl -s -m 1 -o /dev/null "http://127.0.0.1:$RGW_PORT/"; then up=1; break; fi
  sleep 0.1
done
if [ "$up" != 1 ]; then echo "rgw-up: radosgw did not answer on 127.0.0.1:$RGW_PORT (logs in $D)" >&2; exit 1; fi
radosgw-admin -c ceph.conf user create --uid=test --display-name=test \
  --access-key=TESTAK --secret-key=TESTSK >/dev/null 2>&1
cat > s3.env <<EOE
LIVERESTORE_TEST_S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
LIVERESTORE_TEST_S3_ACCESS_KEY=TESTAK
LIVERESTORE_TEST_S3_SECRET_KEY=TESTSK
LIVERESTORE_TEST_RGW_DIR=$D
EOE
echo "http://127.0.0.1:$RGW_PORT"
