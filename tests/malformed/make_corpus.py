#!/usr/bin/env python3
"""Write the malformed-input corpus read by tests/test_malformed.c.

Pure Python (standard library only; no torch, no numpy).  Run from the
project root:
    python3 tests/malformed/make_corpus.py
It rewrites the files below tests/malformed/ and the rows of MANIFEST.tsv
for the kinds it owns (json, safetensors, pt, weights); rows of other kinds
already in MANIFEST.tsv are kept as they are.

Each row: file, kind, a substring the error message must contain.  The
pickles are assembled opcode by opcode the way torch.save lays them out
(protocol 2), so each file differs from a valid one in one deliberate way.
"""
import json
import os
import struct
import zipfile

HERE = "tests/malformed"
OWN_KINDS = {"json", "safetensors", "pt", "weights"}
rows = []


def put(name, data, kind, expect):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
    rows.append((name, kind, expect))


# ---- safetensors ----

def st_bytes(header, data=b"", raw_header=None, hlen=None):
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    n = len(h) if hlen is None else hlen
    return struct.pack("<Q", n) + h + data


def ent(dtype, shape, a, b):
    return {"dtype": dtype, "shape": shape, "data_offsets": [a, b]}


def safetensors_cases():
    ok = {"w": ent("F32", [2], 0, 8)}
    put("st_empty.safetensors", b"", "safetensors", "0 bytes, too short")
    put("st_short.safetensors", b"\x10\x00\x00", "safetensors", "3 bytes, too short")
    put("st_header_huge.safetensors", st_bytes(ok, bytes(8), hlen=200 << 20), "safetensors",
        "exceeds the 104857600-byte limit")
    put("st_header_past_eof.safetensors", st_bytes(ok, bytes(8), hlen=4096), "safetensors",
        "is longer than the file")
    put("st_bad_json.safetensors", st_bytes(None, raw_header=b'{"w": {"dtype": "F32",'),
        "safetensors", "header JSON: byte")
    put("st_not_object.safetensors", st_bytes([1, 2]), "safetensors",
        "header is a JSON array, expected an object")
    put("st_unknown_dtype.safetensors", st_bytes({"w": ent("Q4", [2], 0, 1)}, bytes(1)),
        "safetensors", 'unknown dtype "Q4"')
    put("st_shape_bytes.safetensors", st_bytes({"w": ent("F32", [2, 3], 0, 20)}, bytes(20)),
        "safetensors", "needs 24 bytes, data_offsets span 20")
    put("st_overlap.safetensors",
        st_bytes({"a": ent("F32", [2], 0, 8), "b": ent("F32", [2], 4, 12)}, bytes(12)),
        "safetensors", "overlap tensor")
    put("st_out_of_bounds.safetensors", st_bytes({"w": ent("F32", [1024], 0, 4096)}, bytes(8)),
        "safetensors", "out of bounds (data region is 8 bytes)")
    put("st_gap.safetensors",
        st_bytes({"a": ent("F32", [1], 0, 4), "b": ent("F32", [1], 8, 12)}, bytes(12)),
        "safetensors", "gap in the data region: bytes [4, 8)")
    put("st_trailing.safetensors", st_bytes({"w": ent("F32", [2], 0, 8)}, bytes(16)),
        "safetensors", "the tensors cover 8")
    put("st_shape_overflow.safetensors",
        st_bytes({"w": ent("F32", [1 << 40, 1 << 40], 0, 8)}, bytes(8)),
        "safetensors", "shape overflows")
    put("st_bytes_overflow.safetensors",
        st_bytes({"w": ent("F64", [1 << 61], 0, 8)}, bytes(8)),
        "safetensors", "shape overflows (byte size")
    put("st_duplicate_key.safetensors",
        st_bytes(None, bytes(8), raw_header=b'{"w":{"dtype":"F32","shape":[1],"data_offsets":'
                 b'[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'),
        "safetensors", 'duplicate key "w"')
    put("st_negative_dim.safetensors", st_bytes({"w": ent("F32", [-1], 0, 0)}), "safetensors",
        "shape[0] is not a non-negative integer")
    put("st_float_dim.safetensors", st_bytes({"w": ent("F32", [2.5], 0, 0)}), "safetensors",
        "shape[0] is not a non-negative integer")
    put("st_reversed_offsets.safetensors", st_bytes({"w": ent("F32", [1], 8, 4)}, bytes(8)),
        "safetensors", "0 <= begin <= end")
    put("st_meta_not_string.safetensors",
        st_bytes({"__metadata__": {"epoch": 3}, "w": ent("F32", [2], 0, 8)}, bytes(8)),
        "safetensors", 'value of "epoch" is a number, expected a string')
    put("st_missing_field.safetensors", st_bytes({"w": {"dtype": "F32", "shape": [2]}}),
        "safetensors", 'missing field "data_offsets"')
    put("st_unknown_field.safetensors",
        st_bytes({"w": dict(ent("F32", [2], 0, 8), layout="strided")}, bytes(8)),
        "safetensors", 'unknown field "layout"')
    put("st_too_many_dims.safetensors", st_bytes({"w": ent("F32", [1] * 9, 0, 4)}, bytes(4)),
        "safetensors", "at most 8 integers")
    put("st_deep_json.safetensors",
        st_bytes(None, raw_header=b'{"w":' + b"[" * 100 + b"]" * 100 + b"}"),
        "safetensors", "nesting deeper than 64")
    put("st_bad_utf8.safetensors",
        st_bytes(None, bytes(8), raw_header=b'{"w\xff":{"dtype":"F32","shape":[2],'
                 b'"data_offsets":[0,8]}}'), "safetensors", "invalid UTF-8")
    put("st_nul_name.safetensors",
        st_bytes(None, bytes(8), raw_header=b'{"a\\u0000b":{"dtype":"F32","shape":[2],'
                 b'"data_offsets":[0,8]}}'), "safetensors", "is empty or contains NUL")


# ---- pickle pieces (protocol 2, as torch.save writes them) ----

def pstr(x):
    b = x.encode("utf-8")
    return b"X" + struct.pack("<I", len(b)) + b


def pint(n):
    if -(1 << 31) <= n < (1 << 31):
        return b"J" + struct.pack("<i", n)
    return b"\x8a\x08" + n.to_bytes(8, "little", signed=True)


def ptup(*items):
    return b"(" + b"".join(items) + b"t"


def pglobal(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def ptensor(key, numel, size, stride, offset=0, storage="FloatStorage"):
    pid = ptup(pstr("storage"), pglobal("torch", storage), pstr(key), pstr("cpu"), pint(numel))
    hooks = pglobal("collections", "OrderedDict") + b")R"
    return (pglobal("torch._utils", "_rebuild_tensor_v2") +
            ptup(pid + b"Q", pint(offset), ptup(*map(pint, size)), ptup(*map(pint, stride)),
                 b"\x89", hooks) + b"R")


def pdict(pairs):
    return b"}(" + b"".join(k + v for k, v in pairs) + b"u"


def pickle(body):
    return b"\x80\x02" + body + b"."


def zinfo(name, method=zipfile.ZIP_STORED):
    zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    zi.compress_type = method
    return zi


def torch_zip(pkl, storages=None, byteorder=None, extra=None, stem="archive",
              pkl_method=zipfile.ZIP_STORED):
    """A torch.save-style archive as bytes (entries STORED unless asked)."""
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        if pkl is not None:
            z.writestr(zinfo(f"{stem}/data.pkl", pkl_method), pkl)
        if byteorder is not None:
            z.writestr(zinfo(f"{stem}/byteorder"), byteorder)
        for k, b in (storages or {}).items():
            z.writestr(zinfo(f"{stem}/data/{k}"), b)
        for name, b in (extra or []):
            z.writestr(zinfo(name), b)
        z.writestr(zinfo(f"{stem}/version"), b"3\n")
    return buf.getvalue()


def central_records(data):
    """Offsets of the central directory records, in order."""
    out, i = [], data.find(b"PK\x01\x02")
    while i >= 0:
        out.append(i)
        i = data.find(b"PK\x01\x02", i + 4)
    return out


def patch(data, at, fmt, value):
    b = bytearray(data)
    struct.pack_into(fmt, b, at, value)
    return bytes(b)


def raw_zip(entries, zip64_central=False, zip64_extra=True, zip64_eocd=True,
            classic_ff=False):
    """A STORED zip written field by field, to place zip64 records where
    Python's zipfile would not: zip64_central puts 0xffffffff in the central
    sizes and offset (with the zip64 extra field unless zip64_extra is
    False); zip64_eocd adds the zip64 end record and locator; classic_ff
    fills the classic end record with 0xffff / 0xffffffff."""
    import zlib
    out, central = b"", b""
    for name, data in entries:
        n = name.encode()
        crc = zlib.crc32(data)
        off = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, crc, len(data),
                           len(data), len(n), 0) + n + data
        size_field, off_field, extra = len(data), off, b""
        if zip64_central:
            size_field, off_field = 0xFFFFFFFF, 0xFFFFFFFF
            if zip64_extra:
                extra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), off)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, crc,
                               size_field, size_field, len(n), len(extra), 0, 0, 0, 0,
                               off_field) + n + extra
    cd_off, cd_size, count = len(out), len(central), len(entries)
    out += central
    if zip64_eocd:
        z = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, cd_size,
                           cd_off)
        out += struct.pack("<IIQI", 0x07064B50, 0, z, 1)
    if classic_ff:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                           0xFFFFFFFF, 0)
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, cd_off, 0)
    return out


W = {"0": struct.pack("<12f", *[0.5 * i for i in range(12)])}
GOOD_PKL = pickle(pdict([(pstr("w"), ptensor("0", 12, (4, 3), (3, 1)))]))


def pt_cases():
    import warnings
    good = torch_zip(GOOD_PKL, W)

    # Hostile or unknown pickle content.
    put("pt_global_os_system.pt",
        torch_zip(pickle(pglobal("os", "system") + pstr("echo hi") + b"\x85R")), "pt",
        "data.pkl byte 2: global os.system is not allowed")
    put("pt_stack_global_eval.pt",
        torch_zip(b"\x80\x04" + b"\x8c\x08builtins\x8c\x04eval\x93" + pstr("1") + b"\x85R."),
        "pt", "global builtins.eval is not allowed")
    put("pt_reduce_str.pt", torch_zip(pickle(pstr("os.system") + pstr("x") + b"\x85R")), "pt",
        "REDUCE on a str, expected an allowed global")
    put("pt_reduce_storage.pt", torch_zip(pickle(pglobal("torch", "FloatStorage") + b")R")),
        "pt", "REDUCE on torch.FloatStorage is not allowed")
    put("pt_inst.pt", torch_zip(pickle(b"(ios\nsystem\n")), "pt",
        "byte 3: opcode 0x69 (INST) is not allowed")
    put("pt_obj.pt", torch_zip(pickle(b"(" + pstr("x") + b"o")), "pt", "(OBJ) is not allowed")
    put("pt_newobj.pt", torch_zip(pickle(b")" + b")" + b"\x81")), "pt", "(NEWOBJ) is not allowed")
    put("pt_build_list.pt", torch_zip(pickle(b"]}b")), "pt",
        "BUILD on a list with a dict state is not allowed")
    put("pt_build_tensor.pt",
        torch_zip(pickle(ptensor("0", 12, (4, 3), (3, 1)) + b"}b"), W), "pt",
        "BUILD on a tensor")
    put("pt_global_in_list.pt",
        torch_zip(pickle(b"]" + pglobal("torch", "FloatStorage") + b"a")), "pt",
        "class/function object stored in a list is not supported")

    # Broken pickle structure.
    put("pt_stack_underflow.pt", torch_zip(pickle(b"s")), "pt",
        "byte 2: stack underflow (opcode SETITEM needs a value)")
    put("pt_underflow_below_mark.pt", torch_zip(pickle(b"}(" + pstr("k") + b"s")), "pt",
        "stack underflow")
    put("pt_no_mark.pt", torch_zip(pickle(pint(1) + b"t")), "pt", "TUPLE without a MARK")
    put("pt_odd_setitems.pt", torch_zip(pickle(b"}(" + pstr("k") + b"u")), "pt",
        "SETITEMS with an odd number (1) of values")
    put("pt_no_stop.pt", torch_zip(b"\x80\x02}"), "pt", "pickle ends without STOP")
    put("pt_bad_memo.pt", torch_zip(pickle(b"h\x07")), "pt", "memo entry 7 was never stored")
    put("pt_protocol1.pt", torch_zip(b"\x80\x01}."), "pt", "pickle protocol 1 is not supported")
    put("pt_long_string.pt", torch_zip(b"\x80\x02X\xff\xff\xff\xff"), "pt",
        "truncated: string of 4294967295 bytes")
    put("pt_long1_huge.pt", torch_zip(pickle(b"\x8a\x09" + bytes(9))), "pt",
        "LONG1 of 9 bytes does not fit in 64 bits")
    put("pt_duplicate_key.pt", torch_zip(pickle(pdict([(pstr("a"), pint(1)),
                                                       (pstr("a"), pint(2))]))), "pt",
        "has the key 'a' twice")
    put("pt_bad_persid.pt", torch_zip(pickle(ptup(pstr("storage"), pstr("x")) + b"Q")), "pt",
        "persistent id is not ('storage'")
    put("pt_cycle.pt", torch_zip(pickle(b"]q\x00h\x00a")), "pt",
        "contains a reference cycle")
    put("pt_dict_cycle.pt", torch_zip(pickle(b"}q\x00" + pstr("k") + b"h\x00s")), "pt",
        "contains a reference cycle")
    put("pt_deep.pt", torch_zip(pickle(b"]" * 100 + b"a" * 99)), "pt",
        "nested deeper than 64 levels")
    put("pt_root_global.pt", torch_zip(pickle(pglobal("collections", "OrderedDict"))), "pt",
        "the pickled object is a bare global")

    # Tensors that do not fit their storage.
    put("pt_missing_storage.pt",
        torch_zip(pickle(pdict([(pstr("w"), ptensor("5", 12, (4, 3), (3, 1)))])), W), "pt",
        "storage '5' has no entry archive/data/5")
    put("pt_storage_size.pt",
        torch_zip(pickle(pdict([(pstr("w"), ptensor("0", 16, (4, 4), (4, 1)))])), W), "pt",
        "16 F32 elements need 64 bytes, the entry has 48")
    put("pt_tensor_oob.pt",
        torch_zip(pickle(pdict([(pstr("w"), ptensor("0", 12, (4, 3), (3, 1), offset=2))])), W),
        "pt", "reaches element 13 of storage '0' which has 12")
    put("pt_stride_oob.pt",
        torch_zip(pickle(pdict([(pstr("w"), ptensor("0", 12, (4, 3), (1, 5)))])), W), "pt",
        "reaches element 13")
    put("pt_shape_overflow.pt",
        torch_zip(pickle(pdict([(pstr("w"), ptensor("0", 12, (1 << 40, 1 << 40), (0, 0)))])),
                  W), "pt", "tensor size/stride overflow")
    put("pt_rank9.pt",
        torch_zip(pickle(pdict([(pstr("w"), ptensor("0", 12, (1,) * 9, (1,) * 9))])), W), "pt",
        "size must be a tuple of at most 8 ints")
    put("pt_complex_storage.pt",
        torch_zip(pickle(pdict([(pstr("w"), ptensor("0", 6, (6,), (1,),
                                                    storage="ComplexFloatStorage"))])), W),
        "pt", "global torch.ComplexFloatStorage is not allowed")

    # Broken archives.
    put("pt_not_zip.pt", b"this is not a checkpoint, just some text\n", "pt",
        "not a zip archive (first bytes 74 68 69 73)")
    put("pt_legacy.pt", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.", "pt",
        "legacy (pre-1.6) torch.save format")
    put("pt_truncated.pt", good[: len(good) * 6 // 10], "pt",
        "no zip end-of-central-directory record")
    put("pt_tiny.pt", good[:10], "pt", "too short for a torch.save zip archive")
    cd = central_records(good)
    put("pt_bad_local_offset.pt", patch(good, cd[0] + 42, "<I", 0x7FFFFF00), "pt",
        "zip entry archive/data.pkl: local header offset 2147483392 is invalid")
    eocd = good.rfind(b"PK\x05\x06")
    loc64 = good.rfind(b"PK\x06\x07")
    bad_cd = patch(good, eocd + 16, "<I", len(good) + 100)
    if loc64 >= 0:  # Python writes no zip64 records for a small archive
        bad_cd = patch(bad_cd, loc64 + 8, "<Q", len(good) + 100)
    put("pt_bad_cd_offset.pt", bad_cd, "pt", "lies outside the file")
    put("pt_method12.pt", patch(good, cd[0] + 10, "<H", 12), "pt",
        "uses compression method 12")
    put("pt_bad_crc.pt", patch(good, cd[0] + 16, "<I", 0xDEADBEEF), "pt",
        "zip entry archive/data.pkl: CRC-32 is")
    # Storage bytes corrupted: opens, fails when the tensor is read.
    i = good.find(W["0"])
    put("pt_storage_crc.pt", good[:i] + b"\xff" + good[i + 1:], "pt",
        "zip entry archive/data/0: CRC-32 is")
    # zip64 records (torch writes the end record and locator; sizes past
    # 4 GiB move into the extra field) and an archive comment.
    z64 = [("archive/data.pkl", GOOD_PKL), ("archive/data/0", W["0"])]
    put("pt_zip64_ok.pt", raw_zip(z64, zip64_central=True, classic_ff=True), "pt", "OK")
    put("pt_zip64_no_extra.pt", raw_zip(z64, zip64_central=True, zip64_extra=False), "pt",
        "zip entry archive/data.pkl needs a zip64 extra field")
    put("pt_zip64_no_locator.pt", raw_zip(z64, zip64_eocd=False, classic_ff=True), "pt",
        "zip64 archive without a zip64 locator")
    put("pt_comment_ok.pt", good[:-2] + struct.pack("<H", 300) + b"#" * 300, "pt", "OK")
    put("pt_missing_data_pkl.pt", torch_zip(None, W), "pt", "missing archive/data.pkl")
    put("pt_no_folder.pt", torch_zip(None, extra=[("data.pkl", GOOD_PKL)], stem="archive"),
        "pt", "zip entry data.pkl is not inside a folder")
    put("pt_big_endian.pt", torch_zip(GOOD_PKL, W, byteorder=b"big"), "pt",
        "byteorder is 'big'; only little-endian files are supported")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dup = torch_zip(GOOD_PKL, W, extra=[("archive/data/0", W["0"])])
    put("pt_duplicate_entry.pt", dup, "pt", "zip entry archive/data/0 appears twice")
    deflated = torch_zip(GOOD_PKL, W, pkl_method=zipfile.ZIP_DEFLATED)
    start = 30 + len("archive/data.pkl")
    put("pt_bad_deflate.pt", deflated[:start] + b"\xff" + deflated[start + 1:], "pt",
        "zip entry archive/data.pkl: corrupt DEFLATE data")


# ---- weights binding (expected keys: weights_expect.txt) ----

EXPECT = """# Keys and shapes the "weights" rows bind (name, dims comma-separated, - for 0-d).
fc.weight 4,3
fc.bias 4
logit_scale -
"""


def weights_cases():
    with open(os.path.join(HERE, "weights_expect.txt"), "w") as f:
        f.write(EXPECT)
    f32 = lambda n: bytes(4 * n)
    full = {"fc.weight": ent("F32", [4, 3], 0, 48), "fc.bias": ent("F32", [4], 48, 64),
            "logit_scale": ent("F32", [], 64, 68)}
    put("w_good.safetensors", st_bytes(full, f32(17)), "weights", "OK")
    miss = {"fc.weight": ent("F32", [4, 3], 0, 48), "logit_scale": ent("F32", [], 48, 52)}
    put("w_missing.safetensors", st_bytes(miss, f32(13)), "weights", "missing (1): fc.bias")
    shaped = dict(full, **{"fc.weight": ent("F32", [3, 4], 0, 48)})
    put("w_shape.safetensors", st_bytes(shaped, f32(17)), "weights",
        "fc.weight expected [4, 3] found [3, 4]")
    scalar = dict(full, **{"logit_scale": ent("F32", [1], 64, 68)})
    put("w_scalar_shape.safetensors", st_bytes(scalar, f32(17)), "weights",
        "logit_scale expected [] found [1]")
    extra = dict(full, **{"extra.bias": ent("F16", [2], 68, 72)})
    put("w_unexpected.safetensors", st_bytes(extra, f32(18)), "weights",
        "0 missing, 0 mis-shaped, 1 unexpected")
    all3 = dict(miss, **{"fc.weight": ent("F32", [3, 4], 0, 48), "other": ent("I64", [1], 52,
                                                                                 60)})
    put("w_all_three.safetensors", st_bytes(all3, f32(15)), "weights",
        "1 missing, 1 mis-shaped, 1 unexpected")
    pkl = pickle(pdict([(pstr("fc.weight"), ptensor("0", 12, (4, 3), (3, 1)))]))
    put("w_pt_missing.pt", torch_zip(pkl, W), "weights", "missing (2): fc.bias, logit_scale")
    full_pkl = lambda prefix: pickle(pdict([
        (pstr(prefix + "fc.weight"), ptensor("0", 12, (4, 3), (3, 1))),
        (pstr(prefix + "fc.bias"), ptensor("1", 4, (4,), (1,))),
        (pstr(prefix + "logit_scale"), ptensor("2", 1, (), ()))]))
    stor = {"0": W["0"], "1": struct.pack("<4f", 1, 2, 3, 4), "2": struct.pack("<f", 4.6)}
    put("w_pt_module_prefix_ok.pt", torch_zip(full_pkl("module."), stor), "weights", "OK")
    good_w = torch_zip(full_pkl(""), stor)
    i = good_w.find(stor["1"])
    put("w_pt_storage_crc.pt", good_w[:i] + b"\xff" + good_w[i + 1:], "weights",
        "0 missing, 0 mis-shaped, 0 unexpected, 1 unreadable")
    put("w_pt_list.pt", torch_zip(pickle(b"]")), "weights",
        "the saved object is a list, expected a dict of tensors")
    put("w_pt_no_tensors.pt", torch_zip(pickle(pdict([(pstr("epoch"), pint(3))]))), "weights",
        "the state dict holds no tensors")


# ---- JSON text ----

def json_cases():
    put("json_trailing_comma.json", b'{"a": [1, 2,]}', "json", "byte 12: expected a value")
    put("json_single_quotes.json", b"{'a': 1}", "json", "byte 1: expected '\"' (object key)")
    put("json_nan.json", b'{"a": NaN}', "json", "byte 6: expected a value")
    put("json_duplicate.json", b'{"a": 1, "b": {"c": 1, "c": 2}}', "json",
        'byte 23: duplicate key "c"')
    put("json_surrogate.json", b'["\\udbff"]', "json", "not followed by a low surrogate")


def main():
    safetensors_cases()
    pt_cases()
    weights_cases()
    json_cases()

    # Keep other kinds' rows; replace ours.
    path = os.path.join(HERE, "MANIFEST.tsv")
    kept = []
    if os.path.exists(path):
        for line in open(path, encoding="utf-8"):
            cols = line.rstrip("\n").split("\t")
            if line.startswith("#") or cols[0] == "file" or len(cols) < 3:
                continue
            if cols[1] not in OWN_KINDS:
                kept.append(line.rstrip("\n"))
    with open(path, "w", encoding="utf-8") as f:
        f.write("# Malformed inputs: each must fail cleanly with the message substring.\n")
        f.write("# Columns (tab-separated): file (under tests/malformed/), kind, expected\n")
        f.write("# substring (\"OK\": must be accepted).  Generated rows: make_corpus.py.\n")
        f.write("file\tkind\texpected\n")
        for r in rows:
            f.write("\t".join(r) + "\n")
        for line in kept:
            f.write(line + "\n")
    print(f"{len(rows)} rows written to {path} ({len(kept)} rows of other kinds kept)")


if __name__ == "__main__":
    main()
