#!/bin/sh
# The files of Warren's container image, from a static `warren` binary:
#
#   docker/make-rootfs.sh target/x86_64-unknown-linux-gnu/release/warren target/docker-rootfs
#
# Used by the Dockerfile's builder stage, and by docker/build-prebuilt.sh, which builds the image's
# `prebuilt` stage with this directory as the build context (no base image needed).
set -eu
bin=$1
root=$2
rm -rf "$root"
# /var/lib/rabbitmq is the data directory (the image's VOLUME); /var/lib/warren exists so that a
# named volume mounted there starts owned by the image's user too.
mkdir -p "$root/bin" "$root/usr/local/bin" "$root/var/lib/warren" "$root/var/lib/rabbitmq" "$root/etc/rabbitmq/conf.d" "$root/tmp"
cp "$bin" "$root/usr/local/bin/warren"
# RabbitMQ's command-line tools, as health checks and Testcontainers call them: the same binary
# answers to these names.
for name in rabbitmqctl rabbitmq-diagnostics rabbitmq-plugins rabbitmqadmin rabbitmq-streams rabbitmq-server; do
  ln -sf warren "$root/usr/local/bin/$name"
done
# No shell in the image: `sh -c "rabbitmq-diagnostics -q ping"` (Docker's CMD-SHELL health
# checks, GitHub Actions' --health-cmd) is answered by the same binary.
ln -sf /usr/local/bin/warren "$root/bin/sh"
# The non-root user the image runs as (uid/gid 999, as in RabbitMQ's image).
printf 'root:x:0:0:root:/root:/sbin/nologin\nwarren:x:999:999:Warren:/var/lib/rabbitmq:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nwarren:x:999:\n' > "$root/etc/group"
chmod 1777 "$root/tmp"
