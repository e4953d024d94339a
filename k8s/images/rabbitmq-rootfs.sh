#!/usr/bin/env bash
# Builds the root filesystem of the RabbitMQ server image from Debian packages:
# a minimal Debian root (debootstrap --variant=minbase) with Debian's rabbitmq-server
# installed, the rabbitmq user at uid/gid 999 (the uid the RabbitMQ Cluster Operator
# runs the broker as) and /var/lib/rabbitmq, /etc/rabbitmq owned by it. Caches, docs
# and apt state are removed. Needs root (chroot) and debootstrap.
#   rabbitmq-rootfs.sh DIR SUITE MIRROR
set -euo pipefail
dir="$1" suite="${2:-bookworm}" mirror="${3:-http://deb.debian.org/debian}"
command -v debootstrap >/dev/null || { echo "needs debootstrap: apt-get install debootstrap" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "needs root (debootstrap and chroot)" >&2; exit 1; }

rm -rf "$dir"
mkdir -p "$dir"
echo ">> debootstrap --variant=minbase $suite ($mirror)" >&2
debootstrap --variant=minbase "$suite" "$dir" "$mirror" >"$dir.debootstrap.log" 2>&1 ||
  { tail -20 "$dir.debootstrap.log" >&2; exit 1; }
# No service starts inside the chroot.
printf '#!/bin/sh\nexit 101\n' > "$dir/usr/sbin/policy-rc.d"
chmod 755 "$dir/usr/sbin/policy-rc.d"
in_root() { chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
# The package's postinst reuses an existing system user "rabbitmq".
in_root groupadd --system --gid 999 rabbitmq
in_root useradd --system --uid 999 --gid 999 --home-dir /var/lib/rabbitmq --no-create-home --shell /bin/false rabbitmq
echo ">> apt-get install rabbitmq-server" >&2
in_root apt-get install -y --no-install-recommends rabbitmq-server >"$dir.apt.log" 2>&1 ||
  { tail -20 "$dir.apt.log" >&2; exit 1; }
in_root dpkg-query -W -f='${Version}\n' rabbitmq-server > "$dir.version"
rm -f "$dir/usr/sbin/policy-rc.d"
in_root apt-get clean
rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/* "$dir"/var/log/* \
  "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/usr/share/locale/* \
  "$dir"/tmp/* "$dir"/var/tmp/*
for d in /var/lib/rabbitmq /var/lib/rabbitmq/mnesia /etc/rabbitmq /etc/rabbitmq/conf.d /var/log/rabbitmq; do
  mkdir -p "$dir$d"
  chown 999:999 "$dir$d"
done
# What the official image ships as defaults (conf.d is read in name order, the operator's
# files are 10-operatorDefaults, 11-default_user, 90-userDefined): AMQP on 5672 and
# the management UI on 15672.
cat > "$dir/etc/rabbitmq/conf.d/05-image-defaults.conf" <<'CONF'
listeners.tcp.default = 5672
management.tcp.port = 15672
CONF
chown 999:999 "$dir/etc/rabbitmq/conf.d/05-image-defaults.conf"
echo ">> rabbitmq-server $(cat "$dir.version") in $dir ($(du -sm "$dir" | cut -f1) MiB)" >&2
