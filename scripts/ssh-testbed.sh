#!/usr/bin/env bash
# A bed of N "hosts" on this machine for the SSH runtime (docs/multi-host.md): each host is a
# network namespace on 10.66.X.(10+K) behind a bridge (10.66.X.1, the control node's side),
# running Debian's sshd with a fresh host key, and with its own remote dir: sshd runs in a
# private mount namespace where DIR/hK/remote is bind-mounted on DIR/remote, so
# `--remote-dir DIR/remote` is a different folder on every host, as on real machines; the
# runtime's default remote dir (/var/tmp/faultline) is likewise DIR/hK/default on host K.
#
#   scripts/ssh-testbed.sh up N DIR     # writes DIR/nodes.txt, DIR/id_ed25519, DIR/known_hosts
#   scripts/ssh-testbed.sh down DIR     # removes exactly what `up` made (listed in DIR/testbed.made)
#
# Needs root, iproute2, iptables, util-linux (unshare) and openssh-server/openssh-client.
# Names start with `sshtb` so that `faultline cleanup` (which owns `fl<hex>` names) never
# touches them.
set -euo pipefail

die() { echo "ssh-testbed: $*" >&2; exit 1; }
record() { echo "$*" >>"$DIR/testbed.made"; }

free_octet() {
    local used x
    used=$(ip -o -4 addr show | grep -o '10\.66\.[0-9]*\.' | cut -d. -f3 | sort -u || true)
    for x in $(seq 1 250); do
        if ! grep -qx "$x" <<<"$used" && [ ! -e "/sys/class/net/sshtb$x" ]; then
            echo "$x"
            return
        fi
    done
    die "no free 10.66.X.0/24 subnet"
}

host_up() { # K
    local k=$1 ns="sshtb$X-h$1" veth="sshtb${X}h$1" ip="10.66.$X.$((10 + $1))" h="$DIR/h$1"
    mkdir -p "$h/remote" "$h/default"
    record netns "$ns"
    ip netns add "$ns"
    record link "$veth"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BR"
    ip link set "$veth" up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ssh-keygen -q -t ed25519 -N '' -C "testbed-h$k" -f "$h/host_ed25519"
    cat >"$h/sshd_config" <<EOF
ListenAddress $ip
HostKey $h/host_ed25519
PidFile $h/sshd.pid
AuthorizedKeysFile $DIR/id_ed25519.pub
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
MaxSessions 64
MaxStartups 64:30:128
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
    record sshd "$h/sshd.pid"
    ip netns exec "$ns" unshare --mount --propagation private \
        sh -c "mount --bind '$h/remote' '$DIR/remote' && mount --bind '$h/default' '$DEFAULT_REMOTE' &&
            exec /usr/sbin/sshd -f '$h/sshd_config' -E '$h/sshd.log'"
    echo "root@$ip" >>"$DIR/nodes.txt"
    echo "$ip $(cut -d' ' -f1,2 "$h/host_ed25519.pub")" >>"$DIR/known_hosts"
}

wait_ssh() { # every host answers over ssh, bounded
    local line deadline=$((SECONDS + 20))
    for line in $(grep -v '^#' "$DIR/nodes.txt"); do
        until ssh -i "$DIR/id_ed25519" -o BatchMode=yes -o ConnectTimeout=2 -o UserKnownHostsFile="$DIR/known_hosts" \
            -o StrictHostKeyChecking=yes "$line" true 2>/dev/null; do
            [ $SECONDS -lt $deadline ] || die "$line does not answer over ssh (see $DIR/h*/sshd.log)"
            sleep 0.2
        done
    done
}

up() {
    [ "$N" -ge 1 ] && [ "$N" -le 20 ] || die "N must be 1..20"
    [ -x /usr/sbin/sshd ] || die "/usr/sbin/sshd missing: install openssh-server (scripts/setup.sh)"
    [ ! -e "$DIR/testbed.made" ] || die "$DIR already holds a test bed: run down first"
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    : >"$DIR/testbed.made"
    X=$(free_octet)
    BR="sshtb$X"
    echo "octet $X" >>"$DIR/testbed.made"
    if [ ! -d /run/sshd ]; then
        record dir /run/sshd
        mkdir -p /run/sshd
    fi
    ssh-keygen -q -t ed25519 -N '' -C faultline-testbed -f "$DIR/id_ed25519"
    mkdir -p "$DIR/remote"
    # The mount point of each host's own default remote dir (an empty folder on this machine).
    if [ ! -d "$DEFAULT_REMOTE" ]; then
        record dir "$DEFAULT_REMOTE"
        mkdir -p "$DEFAULT_REMOTE"
    fi
    echo "# faultline ssh test bed on 10.66.$X.0/24" >"$DIR/nodes.txt"
    : >"$DIR/known_hosts"
    record link "$BR"
    ip link add "$BR" type bridge
    ip addr add "10.66.$X.1/24" dev "$BR"
    ip link set "$BR" up
    # dockerd's FORWARD DROP would cut bridged traffic between the hosts.
    record rule FORWARD -i "$BR" -o "$BR" -j ACCEPT
    iptables -w 5 -I FORWARD -i "$BR" -o "$BR" -j ACCEPT
    for k in $(seq 1 "$N"); do host_up "$k"; done
    wait_ssh
    echo "ssh-testbed: $N hosts on 10.66.$X.0/24; nodes $DIR/nodes.txt, key $DIR/id_ed25519, remote dir $DIR/remote"
}

down() {
    [ -f "$DIR/testbed.made" ] || die "$DIR/testbed.made missing: nothing recorded to remove"
    local kind a
    # Processes first (sshd, and anything still running inside a host), then links, namespaces,
    # rules, folders: the reverse of creation.
    while read -r kind a; do
        case $kind in
        sshd) [ -f "$a" ] && kill "$(cat "$a")" 2>/dev/null || true ;;
        netns) for p in $(ip netns pids "$a" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done ;;
        esac
    done <"$DIR/testbed.made"
    sleep 0.3
    tac "$DIR/testbed.made" | while read -r kind a; do
        case $kind in
        link) [ ! -e "/sys/class/net/$a" ] || ip link del "$a" ;;
        netns) [ ! -e "/run/netns/$a" ] || ip netns del "$a" ;;
        rule) while iptables -w 5 -C $a 2>/dev/null; do iptables -w 5 -D $a; done ;;
        dir) rmdir "$a" 2>/dev/null || true ;;
        esac
    done
    rm -rf "$DIR"/h[0-9]* "$DIR/remote"
    rm -f "$DIR/nodes.txt" "$DIR/id_ed25519" "$DIR/id_ed25519.pub" "$DIR/known_hosts" "$DIR/testbed.made"
    rmdir "$DIR" 2>/dev/null || true
    echo "ssh-testbed: down"
}

# The SSH runtime's default --remote-dir (harness/core/src/runtime/ssh_conn.rs).
DEFAULT_REMOTE=/var/tmp/faultline

case "${1:-}" in
up)
    [ $# -eq 3 ] || die "usage: $0 up N DIR"
    N=$2 DIR=$3
    up
    ;;
down)
    [ $# -eq 2 ] || die "usage: $0 down DIR"
    DIR=$2
    down
    ;;
*) die "usage: $0 up N DIR | down DIR" ;;
esac
