#!/bin/sh
# setup_env.sh - build the reference environment the generators need.
#
#   tests/reference/setup_env.sh DIR        (needs git and a network)
#   export MCLIP_REFENV=DIR
#
# Installs Debian's PyTorch stack and clones open_clip, timm and ftfy at the
# commits the fixtures were made with, keeping only their package folders
# in DIR (nothing is copied into the project).
set -eu
dir=${1:?usage: setup_env.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

if command -v apt-get >/dev/null 2>&1; then
    apt-get install -y python3-torch python3-torchvision python3-numpy python3-pil \
        python3-regex python3-wcwidth python3-tqdm python3-yaml
fi

fetch() {  # fetch URL COMMIT SUBDIR NAME
    tmp=$(mktemp -d)
    git clone -q "$1" "$tmp/repo"
    git -C "$tmp/repo" checkout -q "$2"
    rm -rf "$dir/$4"
    cp -r "$tmp/repo/$3" "$dir/$4"
    rm -rf "$tmp"
    echo "$4 at $2 -> $dir/$4"
}
fetch https://github.com/mlfoundations/open_clip 89fb801f1e60 src/open_clip open_clip
fetch https://github.com/huggingface/pytorch-image-models aa4b5850c154 timm timm
fetch https://github.com/rspeer/python-ftfy v6.3.1 ftfy ftfy
echo "now: export MCLIP_REFENV=$dir"
