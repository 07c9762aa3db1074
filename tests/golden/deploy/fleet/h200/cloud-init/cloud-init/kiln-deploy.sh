#!/bin/sh
# Rendered by kiln 0.1.0 for ComfyUI server on the locked CUDA stack on NVIDIA H200; do not edit: run `invoke deploy` again.
#
# Runs once on a fresh GPU VM (cloud-init runcmd), as root: checks the driver, the Docker Engine and the
# NVIDIA Container Toolkit, puts the cache on an unused NVMe disk if there is one, fetches the model files
# (sha256 verified; KILN_FETCH_MODELS=0: only checked) while it pulls the image by digest and starts it,
# and waits until its warm-up made it healthy. The outcome goes to the console and to
# /var/lib/kiln/status.json; any failure exits 1 with the reason (docs/deploy.md, cloud-init).
# 2 servers, one per GPU, each on the VM's loopback (server i on port 18188+i, its
# exporter 1000 and 1100 above), behind HAProxy from the VM's distribution on KILN_BIND:8188
# (/etc/kiln/haproxy.cfg; routing and stickiness: docs/deploy.md, "Many GPUs, one endpoint").
set -eu

IMAGE=registry.example:5000/team/kiln/comfyui@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
NAME=kiln-comfyui-h200
PORT=8188
CACHE=/var/lib/kiln/cache
MOUNT=/cache
DRIVER_FLOOR=525.60.13
CARD='NVIDIA H200'
BUDGET_S=900
STATUS=/var/lib/kiln/status.json
MANIFEST=/etc/kiln/deploy.json
FETCH=/usr/local/lib/kiln/fetch_models.py
MODELS=0
ARRIVING=.kiln-arriving
SERVERS=2
HOST_PORT=18188
BALANCER_CONFIG=/etc/kiln/haproxy.cfg
BALANCER_SERIES=2.6
KILN_BIND=127.0.0.1
KILN_REGISTRY_USER=
KILN_REGISTRY_PASSWORD=
KILN_FETCH_MODELS=1
HF_ENDPOINT=
HF_TOKEN=
if [ -f /etc/kiln/deploy.env ]; then
    # shellcheck disable=SC1091  # written by whoever launches the VM
    . /etc/kiln/deploy.env
fi

say() {
    echo "kiln-deploy: $*"
    if [ -w /dev/console ]; then echo "kiln-deploy: $*" > /dev/console || true; fi
}

relay_phases() {
    key=seen_$(printf '%s' "$1" | tr -c 'A-Za-z0-9_' '_')
    seen=0
    eval "seen=\${$key:-0}"
    phases=$(docker logs "$1" 2>/dev/null | grep '^kiln: phase ' || true)
    total=$(printf '%s' "$phases" | grep -c '^' || true)
    if [ "$total" -gt "$seen" ]; then
        printf '%s\n' "$phases" | tail -n "+$((seen + 1))" | while IFS= read -r line; do say "$1: ${line#kiln: phase }"; done
    fi
    eval "$key=$total"
}

report() {
    mkdir -p "$(dirname "$STATUS")"
    printf '{"status": "%s", "image": "%s", "detail": "%s"}\n' "$1" "$IMAGE" "$(printf '%s' "$2" | tr '"\\\n' "'/ ")" > "$STATUS"
    say "$1: $2"
}

fail() {
    report failed "$*"
    exit 1
}

check_driver() {
    command -v nvidia-smi > /dev/null 2>&1 || fail "no NVIDIA driver (nvidia-smi not found): install driver $DRIVER_FLOOR or later"
    query=$(nvidia-smi --query-gpu=driver_version,name --format=csv,noheader) \
        || fail "nvidia-smi failed ($(printf '%s' "$query" | head -n 1)): check the VM's GPU and driver"
    line=$(printf '%s\n' "$query" | head -n 1)
    driver=${line%%,*}
    card=${line#*, }
    case "$driver" in
        [0-9]*.[0-9]*) ;;
        *) fail "nvidia-smi sees no GPU (it printed '$line'): check the VM's GPU and driver" ;;
    esac
    lowest=$(printf '%s\n%s\n' "$DRIVER_FLOOR" "$driver" | sort -V | head -n 1)
    [ "$lowest" = "$DRIVER_FLOOR" ] || fail "driver $driver is older than $DRIVER_FLOOR, the floor of CUDA 12.1: upgrade the driver"
    [ "$card" = "$CARD" ] || fail "this VM has a $card, the image is built for a $CARD: choose the matching VM type"
    say "driver $driver (floor $DRIVER_FLOOR), $card"
    count=$(printf '%s\n' "$query" | grep -c .)
    [ "$count" -ge "$SERVERS" ] || fail "this VM has $count GPU(s); the deployment runs $SERVERS servers, one per GPU: choose a VM with $SERVERS"
}

wait_docker() {
    command -v docker > /dev/null 2>&1 || fail "no Docker Engine: install docker.io (or docker-ce)"
    tries=0
    until docker info > /dev/null 2>&1; do
        tries=$((tries + 1))
        [ "$tries" -lt 60 ] || fail "the Docker Engine does not answer after 120 s: see systemctl status docker"
        sleep 2
    done
}

check_toolkit() {
    if ! command -v nvidia-container-runtime-hook > /dev/null 2>&1 && ! docker info 2> /dev/null | grep -q nvidia; then
        fail "no NVIDIA Container Toolkit: install nvidia-container-toolkit, then nvidia-ctk runtime configure --runtime=docker and restart docker"
    fi
}

mount_nvme() {
    if mountpoint -q "$CACHE"; then return 0; fi
    for disk in /dev/nvme*n1; do
        [ -b "$disk" ] || continue
        [ "$(lsblk -rno NAME "$disk" | wc -l)" -eq 1 ] || continue
        [ -z "$(lsblk -rno MOUNTPOINT "$disk")" ] || continue
        fs=$(blkid -o value -s TYPE "$disk" || true)
        if [ -z "$fs" ]; then
            say "formatting $disk for the cache"
            mkfs.ext4 -q -L kiln-cache "$disk"
            udevadm settle || true
        elif [ "$(blkid -o value -s LABEL "$disk" || true)" != kiln-cache ]; then
            continue
        fi
        mkdir -p "$CACHE"
        mount -o noatime "$disk" "$CACHE"
        grep -q '^LABEL=kiln-cache ' /etc/fstab || echo "LABEL=kiln-cache $CACHE ext4 noatime,nofail 0 2" >> /etc/fstab
        say "cache on $disk at $CACHE"
        return 0
    done
    say "no unused NVMe disk: the cache stays on the root disk at $CACHE"
}

fetch_models() {
    [ "$MODELS" -gt 0 ] || return 0
    command -v python3 > /dev/null 2>&1 || missing "no python3 on this VM to fetch the model files with"
    fetch_started=$(date +%s)
    say "fetching $MODELS model file(s) into $CACHE/models"
    mkdir -p "$(dirname "$STATUS")"
    trap 'kill "${fetcher:-}" 2> /dev/null || true; exit 1' TERM
    if [ "$KILN_FETCH_MODELS" = 0 ]; then
        python3 "$FETCH" "$MANIFEST" "$CACHE" --check 2> "$STATUS.err" &
        hint=" (KILN_FETCH_MODELS=0: put the files into $CACHE/models first)"
    else
        HF_ENDPOINT="$HF_ENDPOINT" HF_TOKEN="$HF_TOKEN" python3 "$FETCH" "$MANIFEST" "$CACHE" --owner 10001 2> "$STATUS.err" &
        hint=""
    fi
    fetcher=$!
    wait "$fetcher" || missing "$(tail -n 1 "$STATUS.err")$hint"
    trap - TERM
    rm -f "$STATUS.err"
    say "$MODELS model file(s) in $CACHE/models, verified, in $(($(date +%s) - fetch_started)) s"
}

missing() {
    report "models missing" "$*"
    exit 1
}

prepare_cache() {
    for folder in models inductor triton cuda hf; do
        mkdir -p "$CACHE/$folder"
    done
    chown -R 10001:10001 "$CACHE"
}

pull() {
    if [ -n "$KILN_REGISTRY_USER" ]; then
        printf '%s' "$KILN_REGISTRY_PASSWORD" | docker login --username "$KILN_REGISTRY_USER" --password-stdin "${IMAGE%%/*}" > /dev/null \
            || fail "registry login to ${IMAGE%%/*} refused: check KILN_REGISTRY_USER and KILN_REGISTRY_PASSWORD in /etc/kiln/deploy.env"
    fi
    pull_started=$(date +%s)
    say "pulling $IMAGE"
    docker pull "$IMAGE" > /dev/null &
    puller=$!
    if ! wait "$puller"; then
        puller=
        report failed "cannot pull $IMAGE: check the registry, the credentials and the VM's network"
        wait "$fetching" || true
        exit 1
    fi
    puller=
    bytes=$(docker image inspect --format '{{.Size}}' "$IMAGE" 2> /dev/null || echo 0)
    say "$IMAGE pulled: $((bytes / 1000000)) MB on disk in $(($(date +%s) - pull_started)) s"
}

check_balancer() {
    if ! command -v haproxy > /dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy > /dev/null 2>&1 \
            || { apt-get update -qq > /dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy > /dev/null 2>&1; } \
            || fail "cannot install haproxy: install HAProxy $BALANCER_SERIES or later"
    fi
    version=$(haproxy -v | sed -n 's/.*[Vv]ersion \([0-9][0-9.]*\).*/\1/p' | head -n 1)
    lowest=$(printf '%s\n%s\n' "$BALANCER_SERIES" "$version" | sort -V | head -n 1)
    [ -n "$version" ] && [ "$lowest" = "$BALANCER_SERIES" ] \
        || fail "HAProxy ${version:-of unknown version} is older than $BALANCER_SERIES, which the balancer's configuration needs: install a newer one"
    haproxy -vv 2> /dev/null | grep -q prometheus-exporter || fail "this HAProxy is built without its Prometheus exporter: install your distribution's haproxy package"
}

start() {
    i=0
    while [ "$i" -lt "$SERVERS" ]; do
        start_one "$NAME-$i" "device=$i" "127.0.0.1:$((HOST_PORT + i)):$PORT" \
            --publish "127.0.0.1:$((HOST_PORT + i + 1000)):9188" \
            --publish "127.0.0.1:$((HOST_PORT + i + 1100)):9288"
        i=$((i + 1))
    done
}

start_one() {
    name=$1 gpus=$2 publish=$3
    shift 3
    docker rm -f "$name" > /dev/null 2>&1 || true
    launched="$launched $name"
    docker run --detach --name "$name" --restart unless-stopped --gpus "$gpus" \
        --read-only --tmpfs /tmp:rw,exec,mode=1777,size=1g \
        --tmpfs /opt/comfyui/output:rw,uid=10001,gid=10001,mode=0755 \
        --tmpfs /opt/comfyui/temp:rw,uid=10001,gid=10001,mode=0755 \
        --tmpfs /opt/comfyui/user:rw,uid=10001,gid=10001,mode=0755 \
        --tmpfs /home/comfy:rw,uid=10001,gid=10001,mode=0755 \
        --shm-size 2g --ipc private --security-opt no-new-privileges --cap-drop ALL \
        --env STRICT_GPU=1 \
        --volume "$CACHE:$MOUNT" --publish "$publish" "$@" \
        --label io.kiln.toolkit=0.1.0 --label io.kiln.role=deploy \
        "$IMAGE" > /dev/null || fail "docker run refused the container $name"
}

wait_healthy() {
    started=$(date +%s)
    i=0
    while [ "$i" -lt "$SERVERS" ]; do
        wait_one "$NAME-$i" "$started"
        i=$((i + 1))
    done
    say "$SERVERS servers healthy after $(($(date +%s) - started)) s"
}

start_balancer() {
    haproxy -c -q -f "$BALANCER_CONFIG" || fail "HAProxy refuses $BALANCER_CONFIG: see haproxy -c -f $BALANCER_CONFIG"
    cp "$BALANCER_CONFIG" /etc/haproxy/haproxy.cfg
    grep -v '^KILN_BIND=' /etc/default/haproxy > /etc/default/haproxy.kiln 2> /dev/null || true
    echo "KILN_BIND=$KILN_BIND" >> /etc/default/haproxy.kiln
    mv /etc/default/haproxy.kiln /etc/default/haproxy
    if command -v systemctl > /dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl enable haproxy > /dev/null 2>&1 || true
        systemctl restart haproxy || fail "HAProxy did not start: see journalctl -u haproxy"
    else
        KILN_BIND="$KILN_BIND" haproxy -D -f /etc/haproxy/haproxy.cfg || fail "HAProxy did not start"
    fi
    local_address=$KILN_BIND
    [ "$local_address" != 0.0.0.0 ] || local_address=127.0.0.1
    started=$(date +%s)
    until python3 -c "import sys, urllib.request as u; rows = u.urlopen('http://$local_address:8404/stats;csv', timeout=3).read().decode().splitlines(); sys.exit(sum(',UP' in r for r in rows if r.startswith('comfyui,comfyui-')) < $SERVERS)" 2> /dev/null; do
        [ $(($(date +%s) - started)) -lt 60 ] || fail "the balancer does not have every server in rotation after 60 s: see its stats page on port 8404"
        sleep 2
    done
    report ready "serving on $KILN_BIND:$PORT through HAProxy, $SERVERS servers"
}

wait_one() {
    name=$1 started=$2
    while :; do
        relay_phases "$name"
        state=$(docker inspect --format '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$name")
        case "$state" in
            "running healthy") break ;;
            exited*|restarting*) fail "$name stopped before it was ready: $(docker logs --tail 5 "$name" 2>&1 | tr '\n' ' ')" ;;
        esac
        [ $(($(date +%s) - started)) -lt "$BUDGET_S" ] || fail "$name not healthy after $BUDGET_S s: see docker logs $name"
        sleep 2
    done
    relay_phases "$name"
}

mark_arriving() {
    cat /proc/sys/kernel/random/boot_id > "$CACHE/models/$ARRIVING" 2> /dev/null || true
}

fetched() {
    rm -f "$CACHE/models/$ARRIVING"
    [ "$1" -eq 0 ] || kill -USR1 $$
}

fetch_failed() {
    kill "${puller:-}" 2> /dev/null || true
    exit 1
}

wait_fetch() {
    while kill -0 "$fetching" 2> /dev/null; do
        for name in $launched; do relay_phases "$name"; done
        sleep 1
    done
    wait "$fetching" && return 0
    code=$?
    [ "$code" -le 128 ] || report failed "the model fetch was killed (signal $((code - 128))): see the kernel log"
    return "$code"
}

stop_started() {
    trap "" USR1
    kill "$fetching" 2> /dev/null || true
    for name in $launched; do docker rm -f "$name" > /dev/null 2>&1 || true; done
}

check_driver
wait_docker
check_toolkit
check_balancer
mount_nvme
prepare_cache
launched=
trap 'exit 1' TERM INT HUP
trap fetch_failed USR1
mark_arriving
( trap 'fetched "$?"' EXIT; fetch_models ) &
fetching=$!
trap stop_started EXIT
pull
start
wait_fetch || fetch_failed
trap - EXIT USR1
wait_healthy
start_balancer
