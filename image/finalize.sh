#!/bin/sh
# mkosi finalize script: runs on the host with $BUILDROOT the image tree, after all packages.
# Enables the appliance's units and removes files that would make builds differ.
set -eu
root="$BUILDROOT"
wants="$root/etc/systemd/system/multi-user.target.wants"
mkdir -p "$wants" "$root/etc/systemd/system/network-online.target.wants"
ln -sf /usr/lib/systemd/system/cortex-agent.service "$wants/cortex-agent.service"
ln -sf /usr/lib/systemd/system/cortex-data.service "$wants/cortex-data.service"
ln -sf /usr/lib/systemd/system/cortex-ssh.service "$wants/cortex-ssh.service"
# sshd never starts on its own (openssh-server's postinst enabled it): only cortex-ssh.service
# starts it, when a key was given at boot.
rm -f "$wants/ssh.service" "$root/etc/systemd/system/sockets.target.wants/ssh.socket"
ln -sf /lib/systemd/system/systemd-networkd.service "$wants/systemd-networkd.service"
ln -sf /lib/systemd/system/systemd-networkd-wait-online.service \
    "$root/etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service"
# Only wait for one NIC: a server with an unplugged second port must still boot.
mkdir -p "$root/etc/systemd/system/systemd-networkd-wait-online.service.d"
cat > "$root/etc/systemd/system/systemd-networkd-wait-online.service.d/any.conf" <<'UNIT'
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=60
UNIT
# No machine id: each boot gets its own (empty file = "uninitialized", no first-boot wizard
# because of systemd.firstboot=off).
: > "$root/etc/machine-id"
# Files that differ on every build (and the SSH host keys openssh-server's postinst made: every
# machine makes its own at boot, a shared private key in the image would be a hole).
rm -f "$root/var/lib/dbus/machine-id" "$root/var/lib/systemd/random-seed" \
    "$root/var/cache/ldconfig/aux-cache" "$root/etc/ssh/ssh_host_"* 2>/dev/null || true
rm -f "$root/efi/loader/random-seed" "$root/boot/loader/random-seed" 2>/dev/null || true
