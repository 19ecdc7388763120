#!/bin/sh
# Start-up of the emulated device, run once by busybox init (sysinit) before the console getty.
# The security profile comes from /etc/lab.conf and the password hashes from /etc/shadow, both of which
# the launcher appends to the initramfs at each boot: one image serves both profiles.
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /run/sshd /run/faillock /var/log

. /etc/lab.conf
rm -f /etc/lab.conf
hostname qemu-plc

modprobe virtio_pci
modprobe virtio_rng  # seeds the kernel's random pool at once: sshd waits for it otherwise (about 1.5 s)
modprobe virtio_net
modprobe virtio_blk  # the application bundle's disk (below)
/sbin/ip link set lo up
/sbin/ip link set eth0 up
/sbin/ip addr add 10.0.2.15/24 dev eth0
/sbin/ip route add default via 10.0.2.2
if [ -n "$ZONE_MAC" ]; then  # a second NIC in a control zone behind a conduit (labs/qemu/netns.py)
    for dev in /sys/class/net/*; do [ "$(cat "$dev/address")" = "$ZONE_MAC" ] && ZONE_IF=${dev##*/}; done
    /sbin/ip link set "$ZONE_IF" up
    /sbin/ip addr add "$ZONE_ADDR" dev "$ZONE_IF"
    /sbin/ip route add 10.62.0.0/16 via "${ZONE_ADDR%.*}.1"
fi
for net in $NETS; do  # networks of its own (labs/qemu/netns.py SEGMENTS): "MAC=ADDRESS/24" each
    for dev in /sys/class/net/*; do [ "$(cat "$dev/address")" = "${net%%=*}" ] && NET_IF=${dev##*/}; done
    /sbin/ip link set "$NET_IF" up
    /sbin/ip addr add "${net#*=}" dev "$NET_IF"
done
# Forwarding between its networks: the weak build routes (CR 5.1 fails), the hardened one does not.
if [ "$PROFILE" = hardened ]; then echo 0 > /proc/sys/net/ipv4/ip_forward; else echo 1 > /proc/sys/net/ipv4/ip_forward; fi

# Logging first, so that the services' start-up and every login attempt are recorded.
if [ -n "$SYSLOG" ]; then syslogd -O /var/log/messages -L -R "$SYSLOG"; else syslogd -O /var/log/messages; fi

if [ "$PROFILE" = hardened ]; then
    cat > /etc/issue.net <<EOF
$BANNER
EOF
    cp /etc/issue.net /etc/issue  # getty shows it before the console login prompt
    # the tally files (mode 0660) inherit group adm: the admin account unlocks with faillock --reset
    chgrp adm /run/faillock
    chmod 2770 /run/faillock
    cat > /etc/security/faillock.conf <<EOF
dir = /run/faillock
deny = $LOCK_DENY
unlock_time = $LOCK_UNLOCK_S
fail_interval = 900
# no extra delay after a failure: the lockout is the defence, and the harness counts attempts
nodelay
EOF
    AUTH="auth required pam_faillock.so preauth
auth [success=1 default=bad] pam_unix.so nodelay
auth [default=die] pam_faillock.so authfail
auth sufficient pam_faillock.so authsucc
auth required pam_deny.so
account required pam_faillock.so"
    SSHD="PermitRootLogin no
MaxAuthTries $LOCK_DENY
Banner /etc/issue.net
KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512
HostKeyAlgorithms ssh-ed25519
Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes128-ctr
MACs hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,umac-128-etm@openssh.com"
else
    rm -f /etc/issue /etc/issue.net
    AUTH="auth required pam_unix.so nodelay"
    # legacy algorithms and a 1024-bit RSA host key (SHA-1 signatures), as an old firmware would keep them
    SSHD="PermitRootLogin yes
MaxAuthTries 1000
Banner none
HostKey /etc/ssh/ssh_host_rsa_key
KexAlgorithms +diffie-hellman-group14-sha1,diffie-hellman-group1-sha1,diffie-hellman-group-exchange-sha1
HostKeyAlgorithms +ssh-rsa
Ciphers +aes128-cbc,aes256-cbc,3des-cbc
MACs +hmac-sha1,hmac-sha1-etm@openssh.com"
fi
for service in sshd login; do
    cat > /etc/pam.d/$service <<EOF
$AUTH
account required pam_unix.so
password required pam_unix.so sha512
session required pam_unix.so
EOF
done
cat > /etc/ssh/sshd_config <<EOF
ListenAddress 0.0.0.0:22
HostKey /etc/ssh/ssh_host_ed25519_key
UsePAM yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UseDNS no
PrintMotd no
PidFile /run/sshd.pid
SyslogFacility AUTH
TrustedUserCAKeys /etc/ssh/owner_ca.pub
$SSHD
EOF

# The owner's SSH user CA (trust-anchor): empty at boot; the administrators' group may replace it in the
# hardened build, anyone in the weak one.
: > /etc/ssh/owner_ca.pub
chgrp adm /etc/ssh/owner_ca.pub
if [ "$PROFILE" = hardened ]; then chmod 664 /etc/ssh/owner_ca.pub; else chmod 666 /etc/ssh/owner_ca.pub; fi
/usr/sbin/sshd
# The web endpoint: a static status page over TLS (lighttpd + mod_openssl). The weak build keeps TLS 1.0 and
# every suite OpenSSL still has (security level 0) on a 1024-bit RSA certificate signed with SHA-1; the
# hardened one TLS 1.2+ with ECDHE and AEAD suites on a P-256 certificate.
if [ "$PROFILE" = hardened ]; then
    TLS='"MinProtocol" => "TLSv1.2", "CipherString" => "ECDHE+AESGCM:ECDHE+CHACHA20", "Groups" => "X25519:P-256:P-384",
    "Ciphersuites" => "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"'
else
    TLS='"MinProtocol" => "TLSv1", "CipherString" => "ALL:@SECLEVEL=0"'
fi
cat > /etc/lighttpd.conf <<EOF
server.modules = ("mod_openssl")
server.document-root = "/srv/www"
server.port = 443
server.username = "nobody"
server.groupname = "nogroup"
server.pid-file = "/run/lighttpd.pid"
server.errorlog-use-syslog = "enable"
index-file.names = ("index.html")
mimetype.assign = (".html" => "text/html")
ssl.engine = "enable"
ssl.pemfile = "/etc/web/$PROFILE.pem"
ssl.openssl.ssl-conf-cmd = ($TLS)
EOF
/usr/sbin/lighttpd -f /etc/lighttpd.conf
# The weak build also left a telnet login on (undeclared: CR 7.7; credentials in clear: CR 4.1).
[ "$PROFILE" = hardened ] || telnetd -p 23 -l /bin/login
# The application bundle comes from the second disk (/dev/vda, which the host may change between boots): a tar
# of app.tar (plcd) and app.sig, its Ed25519 signature by the build key. The hardened build verifies it with the
# public key in this initramfs before anything in it runs, and refuses (and records) a bundle that fails; the
# weak build runs whatever it finds.
mkdir -p /run/bundle /run/app
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -e /dev/vda ] && break; usleep 50000; done
BUNDLE=refused
if ! tar -xf /dev/vda -C /run/bundle app.tar app.sig 2>/dev/null; then
    REASON="no readable bundle on /dev/vda"
elif [ "$PROFILE" != hardened ]; then
    BUNDLE=ok
elif openssl pkeyutl -verify -pubin -inkey /etc/boot/bundle.pub -rawin -in /run/bundle/app.tar \
        -sigfile /run/bundle/app.sig >/dev/null 2>&1; then
    BUNDLE=ok
    logger -t boot-integrity -p auth.info "application bundle verified (sha256 $(sha256sum < /run/bundle/app.tar | cut -c1-16)...): starting plcd"
else
    REASON="its signature does not verify with the build key (sha256 $(sha256sum < /run/bundle/app.tar | cut -c1-16)...)"
fi
if [ $BUNDLE = ok ]; then
    tar -xf /run/bundle/app.tar -C /run/app
    # Modbus TCP on eth0 and RTU on ttyS1 at once; the CAN node joins when can0 comes up (below).
    PLCD="/run/app/plcd -r /dev/ttyS1 -c can0"
    [ "$PROFILE" = hardened ] || PLCD="$PLCD -w"
    $PLCD &
else
    MSG="application bundle refused: $REASON; plcd not started"
    logger -t boot-integrity -p auth.crit "$MSG"
    echo "boot-integrity: $MSG" > /dev/console
fi
rm -rf /run/bundle

modprobe kvaser_pci
modprobe can_raw
/sbin/ip link set can0 type can bitrate 500000 2>/dev/null && /sbin/ip link set can0 up && CAN=1

# The harness reaches the CAN bus through ttyS2: slcan there, routed both ways to the Kvaser controller.
if [ -n "$CAN" ]; then
    modprobe slcan
    modprobe can_gw
    slcand -o -c -s6 -S 115200 ttyS2 slcan0
    for _ in 1 2 3 4 5 6 7 8 9 10; do [ -e /sys/class/net/slcan0 ] && break; usleep 50000; done
    /sbin/ip link set slcan0 up
    cangw -A -s slcan0 -d can0 -e
    cangw -A -s can0 -d slcan0 -e
fi
