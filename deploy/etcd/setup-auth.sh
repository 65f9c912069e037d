#!/usr/bin/env bash
# Creates the etcd users and roles a Dockyard cluster runs with, then turns etcd's
# authentication on. etcdctl reaches etcd through the usual ETCDCTL_* variables
# (ETCDCTL_ENDPOINTS, ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY).
#
#   setup-auth.sh init  CLUSTER SECRETS_DIR          root and coordinator users; auth on
#   setup-auth.sh agent CLUSTER SECRETS_DIR NODE_ID  one agent's user (only if agents use etcd)
#
# Passwords are read from SECRETS_DIR/<user> and made (random, mode 600) when missing:
#   root                      etcd's administrator; keep it off every Dockyard host
#   dockyard-coordinator      readwrite /dockyard/CLUSTER/ (tokens, jobs, commits, leader)
#   dockyard-agent-NODE_ID    readwrite the one key /dockyard/CLUSTER/nodes/NODE_ID (its
#                             membership) and read /dockyard/CLUSTER/leader/ (who leads);
#                             nothing a coordinator trusts.
set -euo pipefail

usage() { sed -n '2,15p' "$0" >&2; exit 2; }
[ $# -ge 3 ] || usage
cmd=$1 cluster=$2 secrets=$3
case "$cluster" in *[!A-Za-z0-9_-]*|"") echo "setup-auth.sh: '$cluster' is not a cluster name" >&2; exit 2;; esac
mkdir -p "$secrets"

password() {
    local f="$secrets/$1"
    if [ ! -s "$f" ]; then
        (umask 077; head -c 24 /dev/urandom | base64 | tr -d '\n/+=' >"$f")
    fi
    cat "$f"
}

# Once auth is on, every call needs root's password.
as_root() {
    if [ -n "${AUTH_ON:-}" ]; then etcdctl --user "root:$(password root)" "$@"; else etcdctl "$@"; fi
}

user_with_role() { # user role
    as_root user get "$1" >/dev/null 2>&1 || as_root user add "$1" --new-user-password="$(password "$1")" >/dev/null
    as_root role get "$2" >/dev/null 2>&1 || as_root role add "$2" >/dev/null
    as_root user grant-role "$1" "$2" >/dev/null
}

# etcd refuses anonymous calls once auth is on.
etcdctl user list >/dev/null 2>&1 || AUTH_ON=1

root="/dockyard/$cluster"
case "$cmd" in
init)
    user_with_role root root
    user_with_role dockyard-coordinator "dockyard-coordinator-$cluster"
    as_root role grant-permission --prefix=true "dockyard-coordinator-$cluster" readwrite "$root/" >/dev/null
    [ -n "${AUTH_ON:-}" ] || etcdctl auth enable >/dev/null
    echo "etcd users for cluster '$cluster': root, dockyard-coordinator (passwords in $secrets)"
    ;;
agent)
    [ $# -eq 4 ] || usage
    node=$4
    case "$node" in *[!A-Za-z0-9._-]*|"") echo "setup-auth.sh: '$node' is not a node id" >&2; exit 2;; esac
    user_with_role "dockyard-agent-$node" "dockyard-agent-$cluster-$node"
    as_root role grant-permission "dockyard-agent-$cluster-$node" readwrite "$root/nodes/$node" >/dev/null
    as_root role grant-permission --prefix=true "dockyard-agent-$cluster-$node" read "$root/leader/" >/dev/null
    echo "etcd user dockyard-agent-$node (password in $secrets/dockyard-agent-$node)"
    ;;
*) usage ;;
esac
