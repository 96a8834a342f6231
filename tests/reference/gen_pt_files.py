#!/usr/bin/python3
"""Generate the small torch.save fixtures read by tests/test_torch_pt.c.

Run from the project root with Debian's torch:
    /usr/bin/python3 tests/reference/gen_pt_files.py
Writes tests/fixtures/pt/ (kept small; CI has no torch and reads the
committed files):

  state_dict.pt     torch.save of a module state_dict (OrderedDict with the
                    _metadata BUILD) plus extra tensors: fp32, fp16, bf16,
                    f64, int64/int32/int8/uint8/bool, a transposed view, a
                    view with a storage offset, an expanded (stride 0) tensor,
                    a Parameter, 0-d logit_scale and num_batches_tracked
  state_dict_proto4.pt   the same object with pickle protocol 4 (FRAME,
                    SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL)
  state_dict_deflate.zip the state_dict.pt archive re-zipped with DEFLATE
  nested.pt         {'epoch': 3, 'state_dict': {...}} (checkpoint layout)
  prompt_s0.pt      a CoOp prompt file laid out exactly like the paper's
                    (paper-protocol.md section 13)
  expected.safetensors   every tensor above as contiguous F32 under the same
                    names (prompt tensors prefixed 'prompt.'), written with
                    numpy so the C test compares against an independent reader
"""
import hashlib
import json
import os
import shutil
import sys
import zipfile
from collections import OrderedDict

import struct

import numpy as np
import torch

OUT = "tests/fixtures/pt"


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 4)
        self.bn = torch.nn.BatchNorm2d(2)


def state_dict():
    torch.manual_seed(1234)
    m = Tiny()
    with torch.no_grad():
        m.bn.running_mean.copy_(torch.tensor([0.5, -0.25]))
        m.bn.running_var.copy_(torch.tensor([1.5, 0.75]))
        m.bn.num_batches_tracked.fill_(7)
    sd = m.state_dict()  # OrderedDict with _metadata, saved through BUILD
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) * 0.5 - 3.0
    sd["logit_scale"] = torch.tensor(4.605170249938965)          # 0-d
    sd["half"] = (torch.randn(5) * 3).half()
    sd["bf16"] = torch.randn(2, 3).bfloat16()
    sd["f64"] = torch.randn(3, dtype=torch.float64)
    sd["i64"] = torch.tensor([[-5, 0, 7], [1 << 40, -(1 << 33), 3]], dtype=torch.int64)
    sd["i32"] = torch.tensor([-2, 2, 100000], dtype=torch.int32)
    sd["i8"] = torch.tensor([-128, 127, 0], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255, 17], dtype=torch.uint8)
    sd["flag"] = torch.tensor([True, False, True])
    sd["transposed"] = base.t()                                   # strides (1, 6)
    sd["offset_view"] = base[1:3, 2:5]                            # offset 8, strides (6, 1)
    sd["expanded"] = torch.tensor([1.0, 2.0, 3.0]).expand(2, 3)   # strides (0, 1)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2))
    sd["empty"] = torch.zeros(0, 3)
    return sd


def prompt():
    torch.manual_seed(0)
    names = ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea",
             "english marigold", "cyclamen ", "blackberry lily,", "bird\u2019s-foot"]
    sha1 = hashlib.sha1(json.dumps(names, ensure_ascii=False).encode("utf-8")).hexdigest()
    meta = {"model_name": "MobileCLIP2-S0", "pretrained": "dfndr2b", "n_ctx": 16,
            "classnames": names, "classnames_sha1": sha1, "coop_version": "v0.1.1",
            "prompt_type": "text"}
    return {"ctx": torch.randn(16, 512) * 0.02, "meta": meta}


def save_f32_safetensors(path, tensors, metadata):
    """Minimal F32 safetensors writer.  (np.ascontiguousarray turns 0-d arrays
    into shape [1], so 0-d tensors such as logit_scale go through tobytes of
    the array itself to keep shape [].)"""
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name, arr in tensors.items():
        b = np.asarray(arr, dtype="<f4").tobytes(order="C")
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def as_f32(t):
    return t.detach().to(torch.float32).contiguous().numpy()


def main():
    os.makedirs(OUT, exist_ok=True)
    sd = state_dict()
    torch.save(sd, f"{OUT}/state_dict.pt")
    torch.save(sd, f"{OUT}/state_dict_proto4.pt", pickle_protocol=4)
    torch.save({"epoch": 3, "state_dict": OrderedDict((k, sd[k]) for k in
                                                      ["fc.weight", "fc.bias", "logit_scale"])},
               f"{OUT}/nested.pt")
    p = prompt()
    torch.save(p, f"{OUT}/prompt_s0.pt")

    # The same archive with every entry deflated (torch itself writes STORED).
    src = zipfile.ZipFile(f"{OUT}/state_dict.pt")
    with zipfile.ZipFile(f"{OUT}/state_dict_deflate.zip", "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename.replace("state_dict/", "state_dict_deflate/", 1),
                         src.read(info.filename))
        dst.writestr("state_dict_deflate/byteorder", "little")  # as newer torch writes

    # Expected values as contiguous float32.
    exp = OrderedDict((k, as_f32(v)) for k, v in sd.items())
    exp["prompt.ctx"] = as_f32(p["ctx"])
    save_f32_safetensors(f"{OUT}/expected.safetensors", exp,
                         {"classnames_sha1": p["meta"]["classnames_sha1"]})
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {OUT}: {sorted(os.listdir(OUT))}, {total} bytes")


if __name__ == "__main__":
    main()
