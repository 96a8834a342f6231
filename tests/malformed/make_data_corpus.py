#!/usr/bin/env python3
"""Malformed dataset inputs for tests/test_malformed.c: MATLAB level-5 files
(kind 'mat'), CoOp split JSON (kind 'split_json') and TSV manifests (kind
'tsv').  Writes the files next to this script and prints their MANIFEST.tsv
rows (file, kind, expected message substring, or OK).

Usage: python3 tests/malformed/make_data_corpus.py > /tmp/rows.tsv
The level-5 layout follows ../shared/datasets.md section 1.1.
"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS = []

MI_INT8, MI_UINT8, MI_INT32, MI_UINT16, MI_UINT32, MI_DOUBLE = 1, 2, 5, 4, 6, 9
MI_MATRIX, MI_COMPRESSED = 14, 15
MX_DOUBLE, MX_UINT8 = 6, 9


def put(name, data, kind, expected):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    ROWS.append((name, kind, expected))


# ---- level-5 MAT ----

def header(endian="<", text="MATLAB 5.0 MAT-file, Platform: GLNX86, Created on: test"):
    h = text.encode().ljust(116, b" ") + b" " * 8
    h += struct.pack(endian + "H", 0x0100)
    h += b"IM" if endian == "<" else b"MI"
    return h


def pad8(b):
    return b + b"\0" * (-len(b) % 8)


def tag(t, n, e="<"):
    return struct.pack(e + "II", t, n)


def matrix(name, values, stype, fmt, mclass=MX_DOUBLE, dims=None, e="<"):
    """A complete miMATRIX element: flags, dims, name, real part."""
    dims = dims or (1, len(values))
    body = tag(MI_UINT32, 8, e) + struct.pack(e + "II", mclass, 0)
    body += tag(MI_INT32, 4 * len(dims), e) + struct.pack(e + "%di" % len(dims), *dims)
    nb = name.encode()
    if len(nb) <= 4:   # small element form
        body += struct.pack(e + "I", (len(nb) << 16) | MI_INT8) + nb.ljust(4, b"\0")
    else:
        body += tag(MI_INT8, len(nb), e) + pad8(nb)
    data = struct.pack(e + "%d%s" % (len(values), fmt), *values)
    body += tag(stype, len(data), e) + pad8(data)
    return tag(MI_MATRIX, len(body), e) + body


def compressed(elem, e="<"):
    z = zlib.compress(elem)
    return tag(MI_COMPRESSED, len(z), e) + z   # not padded at top level


def mat_files():
    lab = matrix("labels", [1, 2, 3, 4, 5], MI_UINT8, "B")
    good = header() + compressed(lab)

    # Accepted: two unpadded compressed elements; a big-endian (MI) file.
    ok = header() + compressed(matrix("trnid", [7, 300, 5], MI_UINT16, "H")) + \
        compressed(matrix("valid", [1, 2, 3, 4, 6, 8, 9], MI_UINT16, "H"))
    put("mat_ok_unpadded.mat", ok, "mat", "OK")
    put("mat_mi_ok.mat", header(">") + compressed(matrix("ids", [1, 2, 3], MI_UINT16, "H",
                                                         e=">"), ">"), "mat", "OK")

    # Truncated zlib: the element (and file) end before the stream does.
    z = zlib.compress(lab)[:-6]
    put("mat_truncated_zlib.mat", header() + tag(MI_COMPRESSED, len(z)) + z, "mat",
        "is truncated")
    # Bytes after the end of the stream, inside the element.
    z = zlib.compress(lab) + b"\0" * 5
    put("mat_trailing_stream.mat", header() + tag(MI_COMPRESSED, len(z)) + z, "mat",
        "ends 5 bytes before")
    # Zlib bomb: 2 MiB of zeros behind a valid tag (ratio above 1000).
    bomb = tag(MI_MATRIX, (2 << 20) - 8) + b"\0" * ((2 << 20) - 8)
    put("mat_zlib_bomb.mat", header() + compressed(bomb), "mat", "zlib bomb")
    # Inner miMATRIX tag larger than what the stream inflates to.
    inner = tag(MI_MATRIX, len(lab) - 8 + 64) + lab[8:]
    put("mat_inner_size.mat", header() + compressed(inner), "mat", "inner miMATRIX claims")
    # Dims (1x6) disagree with the data (5 values).
    put("mat_dims_data.mat", header() + matrix("labels", [1, 2, 3, 4, 5], MI_UINT8, "B",
                                               dims=(1, 6)), "mat", "dims give 6 elements")
    # v7.3 (HDF5) header; bad endian indicator; short file; wrong element type.
    put("mat_v73.mat", header(text="MATLAB 7.3 MAT-file, Platform: GLNXA64") + b"\0" * 64,
        "mat", "v7.3")
    put("mat_bad_endian.mat", good[:126] + b"XX" + good[128:], "mat", "'IM' or 'MI'")
    put("mat_short.mat", good[:50], "mat", "shorter than the 128-byte MAT header")
    put("mat_top_type.mat", header() + tag(MI_DOUBLE, 8) + struct.pack("<d", 1.0), "mat",
        "expected miMATRIX or miCOMPRESSED")
    # Declared mxUINT8 but holding 300.
    put("mat_class_range.mat", header() + matrix("x", [7, 300], MI_UINT16, "H",
                                                 mclass=MX_UINT8), "mat",
        "is not a valid mxUINT8 value")
    # A sub-element running past its matrix.
    m = bytearray(header() + lab)
    struct.pack_into("<I", m, 132, 24)
    put("mat_matrix_overrun.mat", bytes(m), "mat", "claims 8 bytes but only 0 remain")


# ---- CoOp split JSON ----

def split_files():
    def js(train, val="[]", test="[]", extra=""):
        return '{\n    "train": %s,\n    "val": %s,\n    "test": %s%s\n}\n' % (train, val, test,
                                                                            extra)
    ok = '[["a/1.jpg", 0, "cat"], ["b/2.jpg", 1, "dog"]]'
    put("split_ok.json", js(ok, '[["a/3.jpg", 0, "cat"]]', '[["b/4.jpg", 1, "dog"]]'),
        "split_json", "OK")
    put("split_syntax.json", js('[["a/1.jpg", 0, "cat"],]'), "split_json", "invalid JSON")
    put("split_duplicate_key.json", '{"train": [], "train": [], "val": [], "test": []}',
        "split_json", "duplicate key")
    put("split_two_names.json", js('[["a/1.jpg", 0, "cat"], ["a/2.jpg", 0, "kitten"]]'),
        "split_json", "is named 'kitten' here and 'cat' elsewhere")
    put("split_label_not_in_train.json", js('[["a/1.jpg", 1, "dog"]]'), "split_json",
        "never occurs in \"train\"")
    put("split_abs_path.json", js('[["/etc/passwd", 0, "cat"]]'), "split_json",
        "absolute path")
    put("split_dotdot.json", js('[["../x.jpg", 0, "cat"]]'), "split_json",
        "'..' component")
    put("split_label_float.json", js('[["a/1.jpg", 0.5, "cat"]]'), "split_json",
        "label is not an integer")
    put("split_label_negative.json", js('[["a/1.jpg", -1, "cat"]]'), "split_json",
        "out of range")
    put("split_entry_shape.json", js('[["a/1.jpg", 0]]'), "split_json",
        "expected [\"relpath\", label, \"classname\"]")
    put("split_missing_key.json", '{"train": %s, "test": []}' % ok, "split_json",
        "missing key \"val\"")
    put("split_unknown_key.json", js(ok, extra=',\n    "extra": []'), "split_json",
        "unexpected key \"extra\"")
    put("split_not_object.json", "[1, 2]", "split_json", "expected an object")


# ---- TSV manifests ----

def tsv_files():
    put("tsv_ok.tsv", "\ufeff# comment\r\npath\tlabel\tsplit\r\na.jpg\t0\ttrain\r\n"
        "b.jpg\t1\tval\r\n", "tsv", "OK")
    put("tsv_label_negative.tsv", "path\tlabel\na.jpg\t0\nb.jpg\t-1\n", "tsv",
        "tsv_label_negative.tsv:3: label -1 out of range")
    put("tsv_empty_class.tsv", "a.jpg\t0\nb.jpg\t2\n", "tsv",
        "class 1 '1' has no images (an empty class)")
    put("tsv_bad_split.tsv", "path\tlabel\tsplit\na.jpg\t0\ttest\nb.jpg\t0\tdev\n", "tsv",
        "tsv_bad_split.tsv:3: split 'dev' is not train, val or test")
    put("tsv_abs_path.tsv", "/data/a.jpg\t0\n", "tsv", "tsv_abs_path.tsv:1: absolute path")
    put("tsv_duplicate.tsv", "a.jpg\t0\nb.jpg\t0\na.jpg\t0\n", "tsv",
        "tsv_duplicate.tsv:3: path 'a.jpg' already listed on line 1")
    put("tsv_no_rows.tsv", "# nothing\npath\tlabel\n", "tsv", "no rows")
    put("tsv_header_no_label.tsv", "path\tsplit\na.jpg\ttrain\n", "tsv",
        "header lacks a 'label' column")
    put("tsv_caption.tsv", "path\tcaption\na.jpg\ta cat\n", "tsv", "a caption manifest")
    put("tsv_one_field.tsv", "a.jpg\n", "tsv", "tsv_one_field.tsv:1: expected path<TAB>label")
    put("tsv_nul.tsv", "a.jpg\t0\nb.j\0pg\t0\n", "tsv", "tsv_nul.tsv:2: NUL byte")
    put("tsv_two_names.tsv", "path\tlabel\tclassname\na.jpg\t0\tcat\nb.jpg\t0\tdog\n", "tsv",
        "tsv_two_names.tsv:3: label 0 is named 'dog' here but 'cat' on an earlier line")


if __name__ == "__main__":
    mat_files()
    split_files()
    tsv_files()
    for row in ROWS:
        print("\t".join(row))
