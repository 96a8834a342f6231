#!/usr/bin/env python3
"""Malformed learned-prompt files for tests/test_malformed.c (kind 'prompt',
read by coop_promptfile_load; kind 'vprompt', by coop_vp_load): paper .pt prompts (torch.save of
{"ctx": Tensor[M, W], "meta": dict}) and mclip prompt files (safetensors
with prompt metadata), see coop/promptfile.h.  Writes the files next to
this script and prints their MANIFEST.tsv rows (file, kind, expected
message substring, or OK).

Usage: python3 tests/malformed/make_prompt_corpus.py > /tmp/rows.tsv
The pickle and safetensors pieces come from make_corpus.py.
"""
import hashlib
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_corpus import pdict, pickle, pint, pstr, ptensor, st_bytes, torch_zip  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

ROWS = []
M, W = 4, 8
CTX = struct.pack("<%df" % (M * W), *[0.01 * i for i in range(M * W)])


def put(name, data, expected, kind="prompt"):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
    ROWS.append((name, kind, expected))


def sha1_names(names):
    return hashlib.sha1(json.dumps(names, ensure_ascii=False).encode()).hexdigest()


# ---- paper .pt prompts ----

def paper(meta_pairs, size=(M, W), stride=(W, 1), numel=M * W, ctx=True):
    items = []
    if ctx:
        items.append((pstr("ctx"), ptensor("0", numel, size, stride)))
    if meta_pairs is not None:
        items.append((pstr("meta"), pdict(meta_pairs)))
    return torch_zip(pickle(pdict(items)), {"0": CTX[: numel * 4]}, byteorder=b"little")


MODEL = (pstr("model_name"), pstr("MobileCLIP2-S0"))
put("prompt_pt_ok.pt", paper([MODEL, (pstr("n_ctx"), pint(M)),
                              (pstr("coop_version"), pstr("v0.1.1"))]), "OK")
put("prompt_pt_no_meta.pt", paper(None), "no 'meta' dict beside 'ctx'")
put("prompt_pt_no_ctx.pt", paper([MODEL], ctx=False), "key 'ctx' is missing")
put("prompt_pt_no_model.pt", paper([(pstr("n_ctx"), pint(M))]), "key 'model_name' is missing")
put("prompt_pt_visual.pt", paper([MODEL, (pstr("prompt_type"), pstr("vis"))]),
    "meta.prompt_type is 'vis'; only text prompts are read here")
put("prompt_pt_nctx.pt", paper([MODEL, (pstr("n_ctx"), pint(5))]),
    "meta.n_ctx 5 but ctx has 4 rows")
put("prompt_pt_version.pt", paper([MODEL, (pstr("coop_version"), pstr("v9"))]),
    "meta.coop_version 'v9' is unknown")
put("prompt_pt_1d.pt", paper([MODEL], size=(M * W,), stride=(1,)),
    "ctx has 1 dims, expected [n_ctx, width]")
names = ["cat", "dog"]
put("prompt_pt_sha1.pt", paper([MODEL, (pstr("classnames"), b"](" + pstr("cat") + pstr("dog")
                                        + b"e"), (pstr("classnames_sha1"), pstr("0" * 40))]),
    "meta.classnames_sha1 0000000000000000000000000000000000000000 does not match")
# 100 rows of context: more than the 75 slots between SOT and EOT.
put("prompt_pt_100_rows.pt", paper([MODEL], size=(100, W), stride=(0, 1), numel=W),
    "prompt_pt_100_rows.pt: prompt: 100 context vectors")
# A stride-0 view of 2^32 + 4 rows: int truncation would make it 4 rows
# and the loader would allocate 2^37 bytes.
put("prompt_pt_huge_view.pt", paper([MODEL], size=((1 << 32) + M, W), stride=(0, 1), numel=W),
    "prompt_pt_huge_view.pt: ctx is [4294967300, 8]")

# Visual prompts (read by the text loader only to be refused, and by the
# visual loader): [1, 3, S, S] with a border of 2, S = 8.
VIS = (pstr("prompt_type"), pstr("vis"))
put("prompt_pt_visual_ok.pt", paper([MODEL, VIS, (pstr("border_size"), pint(2))],
                                    size=(1, 3, 8, 8), stride=(0, 0, 0, 1), numel=8),
    "meta.prompt_type is 'vis'")
# A stride-0 lead dimension of 2^32 + 1: int truncation made it 1.
put("prompt_pt_visual_huge_view.pt",
    paper([MODEL, VIS], size=((1 << 32) + 1, 3, 8, 8), stride=(0, 0, 0, 1), numel=8),
    "meta.prompt_type is 'vis'")
# The same two files through the visual-prompt loader (kind 'vprompt').
ROWS.append(("prompt_pt_visual_ok.pt", "vprompt", "OK"))
ROWS.append(("prompt_pt_visual_huge_view.pt", "vprompt",
             "ctx is not a [3, S, S] image-sized tensor (4 dims)"))
put("prompt_pt_visual_text.pt", paper([MODEL]), "meta.prompt_type is missing; a visual prompt "
    "has 'vis'", kind="vprompt")


# ---- mclip prompt files (safetensors) ----

def mclip(meta_over=None, drop=(), shape=(M, W), dtype="F32"):
    meta = {"mclip_prompt": "1", "prompt_type": "text", "model_name": "custom",
            "n_ctx": str(M), "width": str(W), "csc": "0", "n_cls": "0",
            "class_position": "end", "pooling": "eot", "sequence_form": "paper",
            "dtype": "fp32", "source": "mclip"}
    meta.update(meta_over or {})
    for k in drop:
        del meta[k]
    n = 1
    for d in shape:
        n *= d
    size = 4 if dtype == "F32" else 2
    hdr = {"__metadata__": meta, "ctx": {"dtype": dtype, "shape": list(shape),
                                         "data_offsets": [0, n * size]}}
    return st_bytes(hdr, bytes(n * size))


put("prompt_st_ok.prompt", mclip({"classnames": json.dumps(names),
                                  "classnames_sha1": sha1_names(names)}), "OK")
put("prompt_st_no_format.prompt", mclip(drop=("mclip_prompt",)),
    "not an mclip prompt file (metadata mclip_prompt is missing")
put("prompt_st_visual.prompt", mclip({"prompt_type": "vis"}),
    "prompt_type 'vis' is not a text prompt")
put("prompt_st_width.prompt", mclip({"width": "-8"}),
    "prompt metadata 'width' is '-8', expected a non-negative integer")
put("prompt_st_pooling.prompt", mclip({"pooling": "mean"}),
    "prompt metadata 'pooling' is 'mean', expected one of argmax, eot, legacy")
put("prompt_st_shape.prompt", mclip(shape=(M, W + 1)),
    "tensor 'ctx' has another shape or dtype; expected a float tensor [4, 8]")
put("prompt_st_int_ctx.prompt", mclip(dtype="I16", shape=(M, W)),
    "tensor 'ctx' has another shape or dtype")
put("prompt_st_names.prompt", mclip({"classnames": '{"a": 1}'}),
    "prompt metadata 'classnames' is not a JSON array of strings")
put("prompt_st_names_type.prompt", mclip({"classnames": '["a", 2]'}),
    "classnames[1] is a number, expected a string")
put("prompt_st_sha1.prompt", mclip({"classnames": json.dumps(names),
                                    "classnames_sha1": "1" * 40}),
    "classnames_sha1 1111111111111111111111111111111111111111 does not match")
# The template form pools at the true EOT only.
put("prompt_st_template_eot.prompt", mclip({"sequence_form": "template"}),
    "prompt_st_template_eot.prompt: prompt: the template form pools at the true EOT")
put("prompt_st_zero_ctx.prompt", mclip({"n_ctx": "0"}, shape=(0, W)),
    "prompt_st_zero_ctx.prompt: prompt: 0 context vectors")
put("prompt_st_zero_width.prompt", mclip({"width": "0"}, shape=(M, 0)),
    "prompt metadata width 0, csc 0, n_cls 0: expected width >= 1")
put("prompt_st_csc_no_classes.prompt", mclip({"csc": "1", "n_cls": "0"}, shape=(0, M, W)),
    "prompt metadata width 8, csc 1, n_cls 0")

for r in ROWS:
    print("\t".join(r))
