"""refcommon.py - shared pieces of the reference generators.

The reference is open_clip + timm running on Debian's PyTorch 1.13
(apt-get install python3-torch python3-torchvision python3-regex
python3-wcwidth python3-pil).  open_clip, timm and ftfy are not Debian
packages: put their source trees (the `open_clip`, `timm` and `ftfy` package
folders) in one directory and point MCLIP_REFENV at it, or install them with
pip where a network allows.  See tests/reference/README.md.

This module:
  * puts $MCLIP_REFENV on sys.path and applies the three shims open_clip
    needs on torch 1.13 (see ../shared/arch-spec.md section 11);
  * writes and reads safetensors files with numpy (the `safetensors` package
    is not in Debian);
  * redraws every parameter and buffer of a model from a seed and the
    tensor's name so that every branch of the network matters (arch-spec
    section 12).
"""
import hashlib
import json
import math
import os
import struct
import sys
import types

import numpy as np

REFENV = os.environ.get("MCLIP_REFENV", os.path.join(os.path.dirname(__file__), "..", "..", "..", "refenv"))


def setup():
    """Import torch, timm and open_clip with the torch-1.13 shims applied."""
    if REFENV not in sys.path:
        sys.path.insert(0, os.path.abspath(REFENV))
    import torch
    import torch.nn.functional as F

    # 1. torch.compiler.disable is used as a decorator at import time.
    if not hasattr(torch, "compiler"):
        def _disable(fn=None, *a, **k):
            return fn if callable(fn) else (lambda f: f)
        torch.compiler = types.SimpleNamespace(disable=_disable)
    # 2. torch.amp.GradScaler appears in an annotation evaluated at import.
    if not hasattr(torch.amp, "GradScaler"):
        torch.amp.GradScaler = torch.cuda.amp.GradScaler
    import timm  # noqa: F401  (before the polyfill: timm probes for fused attention)

    # 3. F.scaled_dot_product_attention with the 2.1+ `scale=` keyword.
    if not hasattr(F, "scaled_dot_product_attention"):
        def _sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
            s = scale if scale is not None else q.shape[-1] ** -0.5
            a = (q * s) @ k.transpose(-2, -1)
            if is_causal:
                L = q.shape[-2]
                m = torch.ones(L, L, dtype=torch.bool).triu(1)
                a = a.masked_fill(m, float("-inf"))
            if attn_mask is not None:
                if attn_mask.dtype == torch.bool:
                    a = a.masked_fill(~attn_mask, float("-inf"))
                else:
                    a = a + attn_mask
            return a.softmax(-1) @ v
        F.scaled_dot_product_attention = _sdpa
    import open_clip
    return torch, open_clip


# ---- safetensors (numpy) ----

_DT = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int64"): "I64",
       np.dtype("int32"): "I32", np.dtype("uint8"): "U8", np.dtype("float64"): "F64"}
_NP = {v: k for k, v in _DT.items()}


def save_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> numpy array (kept in insertion order)."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        arr = arr.copy(order="C") if not arr.flags.c_contiguous else arr  # keeps 0-d shapes
        if arr.dtype == np.dtype("bool"):
            arr = arr.astype(np.uint8)
        b = arr.tobytes()
        header[name] = {"dtype": _DT[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=_NP[info["dtype"]]).reshape(info["shape"]).copy()
    return out, header.get("__metadata__", {})


# ---- deterministic weights (arch-spec section 12) ----

def _rng_for(seed, name):
    h = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def randomize(model, seed=0, fp16_round=True):
    """Redraw every parameter and buffer from (seed, name).

    conv/linear weights N(0, 1/fan_in) (half on residual output projections),
    biases N(0, 0.05^2), BN gamma U(0.5, 1.5), beta N(0, 0.2^2), running mean
    N(0, 0.2^2), running var U(0.5, 1.5), LN gamma U(0.5, 1.5), layer-scale
    gamma U(0.1, 0.6), token embedding N(0, 0.02^2), positional N(0, 0.01^2),
    logit_scale ln 100.  With fp16_round the values are rounded to fp16 so a
    fp16 weights file reproduces them exactly.
    """
    import torch
    sd = model.state_dict()
    new = {}
    for name, t in sd.items():
        r = _rng_for(seed, name)
        shape = tuple(t.shape)
        leaf = name.split(".")[-1]
        if t.dtype not in (torch.float32, torch.float16):
            new[name] = t.clone()
            continue
        if name == "logit_scale":
            v = np.array(math.log(100.0))
        elif "token_embedding" in name:
            v = r.normal(0, 0.02, shape)
        elif "positional_embedding" in name or name.endswith("pos_embed"):
            v = r.normal(0, 0.01, shape)
        elif "cls_token" in name:
            v = r.normal(0, 0.02, shape)
        elif leaf == "running_mean":
            v = r.normal(0, 0.2, shape)
        elif leaf == "running_var":
            v = r.uniform(0.5, 1.5, shape)
        elif leaf == "gamma" or "layer_scale" in name:
            v = r.uniform(0.1, 0.6, shape)
        elif len(shape) == 1 and leaf == "weight":  # BN / LN gamma
            v = r.uniform(0.5, 1.5, shape)
        elif len(shape) == 1 and leaf == "bias":
            is_norm = (name[: -len("bias")] + "running_mean") in sd or "ln" in name or "norm" in name
            v = r.normal(0, 0.2 if is_norm else 0.05, shape)
        elif leaf == "text_projection" or (len(shape) >= 2):
            fan_in = int(np.prod(shape[1:])) if leaf != "text_projection" else shape[0]
            std = 1.0 / math.sqrt(max(fan_in, 1))
            if any(k in name for k in ("out_proj", "c_proj", "attn.proj", "mlp.fc2", ".proj.weight")):
                std *= 0.5
            v = r.normal(0, std, shape)
        else:
            v = r.normal(0, 0.05, shape)
        v = np.asarray(v, dtype=np.float32)
        if fp16_round:
            v = v.astype(np.float16).astype(np.float32)
        new[name] = torch.from_numpy(v.reshape(shape)).to(t.dtype)
    model.load_state_dict(new, strict=True)
    return model


def state_dict_numpy(model, fp16=False):
    out = {}
    for k, v in model.state_dict().items():
        a = v.detach().cpu().numpy()
        if fp16 and a.dtype == np.float32:
            a = a.astype(np.float16)
        out[k] = a
    return out
