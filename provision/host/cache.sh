#!/bin/sh
# Prepare a model/compile cache directory for kiln images on fast local disk.
# Usage: cache.sh DIR [UID]   (UID: the image's user, default 10001)
# Creates DIR/{models,inductor,triton,hf,cuda} owned by UID, and says whether DIR is on NVMe.
# Works without the toolkit; needs root to change ownership.
set -eu

dir=${1:?usage: cache.sh DIR [UID]}
uid=${2:-10001}

if [ -e "$dir" ] && [ ! -d "$dir" ]; then
    echo "cache: $dir exists and is not a directory" >&2
    exit 2
fi
mkdir -p "$dir"

# Which block device holds DIR, and is it NVMe? (/sys/block/nvme* are the NVMe disks.)
source_dev=$(df --output=source "$dir" | tail -n 1)
disk=$(basename "$source_dev")
parent=$(basename "$(dirname "$(readlink -f "/sys/class/block/$disk" 2>/dev/null || echo /x/"$disk")")")
nvme_disks=""
for path in /sys/block/nvme*; do
    [ -e "$path" ] && nvme_disks="$nvme_disks $(basename "$path")"
done
case "$disk $parent" in
    nvme*) echo "cache: $dir is on NVMe device $source_dev" ;;
    *)
        if [ -n "$nvme_disks" ]; then
            echo "cache: WARNING: $dir is on $source_dev, not NVMe; NVMe disks here: $nvme_disks" >&2
        else
            echo "cache: WARNING: $dir is on $source_dev; this host has no NVMe disk (first loads will be slower)" >&2
        fi
        ;;
esac

for sub in models inductor triton hf cuda; do
    mkdir -p "$dir/$sub"
done
if ! chown -R "$uid:$uid" "$dir" 2>/dev/null; then
    echo "cache: cannot give $dir to uid $uid (this filesystem cannot hold the owner, or not root)" >&2
    exit 2
fi
chmod 0775 "$dir" "$dir"/models "$dir"/inductor "$dir"/triton "$dir"/hf "$dir"/cuda
echo "cache: $dir ready (models inductor triton hf cuda, owner $uid)"
