#!/bin/sh
# download.sh - fetch MobileCLIP2 weights and the BPE vocabulary for mclip.
#
#   weights/download.sh S0            -> weights/MobileCLIP2-S0/open_clip_model.safetensors
#   weights/download.sh all           -> all six variants
#   weights/download.sh vocab         -> weights/bpe_simple_vocab_16e6.txt.gz only
#
# The checkpoints are the open_clip releases on the Hugging Face hub
# (repositories timm/MobileCLIP2-<X>-OpenCLIP, file open_clip_model.safetensors,
# un-fused training layout, keys as open_clip names them); mclip fuses them
# at load time.  The vocabulary is open_clip's bpe_simple_vocab_16e6.txt.gz
# (MIT licence), checked against its sha256.  Needs curl or wget.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
hub=${MCLIP_HUB:-https://huggingface.co}
vocab_url=${MCLIP_VOCAB_URL:-https://raw.githubusercontent.com/mlfoundations/open_clip/main/src/open_clip/bpe_simple_vocab_16e6.txt.gz}
vocab_sha256=924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a

fetch() {  # fetch URL OUT: download to OUT.part, then rename
    url=$1 out=$2
    echo "downloading $url" >&2
    if command -v curl >/dev/null 2>&1; then
        curl -fL --retry 3 -o "$out.part" "$url"
    elif command -v wget >/dev/null 2>&1; then
        wget -O "$out.part" "$url"
    else
        echo "download.sh: need curl or wget" >&2
        exit 1
    fi
    mv "$out.part" "$out"
}

get_vocab() {
    out="$here/bpe_simple_vocab_16e6.txt.gz"
    [ -f "$out" ] || fetch "$vocab_url" "$out"
    got=$(sha256sum "$out" | cut -d' ' -f1)
    if [ "$got" != "$vocab_sha256" ]; then
        echo "download.sh: $out has sha256 $got, expected $vocab_sha256; removing it" >&2
        rm -f "$out"
        exit 1
    fi
    echo "$out"
}

get_model() {  # S0 S2 B S3 S4 L-14
    name="MobileCLIP2-$1"
    dir="$here/$name"
    mkdir -p "$dir"
    out="$dir/open_clip_model.safetensors"
    [ -f "$out" ] || fetch "$hub/timm/$name-OpenCLIP/resolve/main/open_clip_model.safetensors" "$out"
    echo "$out"
}

[ $# -ge 1 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
for what in "$@"; do
    case "$what" in
        vocab) get_vocab ;;
        all) get_vocab; for v in S0 S2 B S3 S4 L-14; do get_model "$v"; done ;;
        S0|S2|B|S3|S4|L-14) get_vocab; get_model "$what" ;;
        *) echo "download.sh: unknown variant '$what' (S0 S2 B S3 S4 L-14 all vocab)" >&2; exit 2 ;;
    esac
done
