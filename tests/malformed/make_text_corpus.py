#!/usr/bin/env python3
"""Malformed text inputs for tests/test_malformed.c: BPE vocabulary files
(kind 'bpe': each must be refused by tok_load with the message given),
tokenizer input text (kind 'text': arbitrary bytes, which the tokenizer must
take without error, giving valid ids, SOT/EOT in place and a decode that is
valid UTF-8), few-shot manifests (kind 'fewshot': ds_fewshot_read against
the five-item dataset of the runner: a.jpg 0 train, b.jpg 1 train, c/d.png 0
val, e.jpg 1 val, f.jpg 1 test) and caption files (kinds 'karpathy',
'token' and 'caption_tsv': cs_load_karpathy, cs_load_token, cs_load_tsv).
Writes the files next to this script and prints their MANIFEST.tsv rows
(file, kind, expected message substring, or OK).

Usage: python3 tests/malformed/make_text_corpus.py > /tmp/rows.tsv
"""
import gzip
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS = []
NMERGES = 48894


def put(name, data, kind, expected):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
    ROWS.append((name, kind, expected))


def gz(data):
    # mtime=0: the same bytes on every run.
    return gzip.compress(data, 9, mtime=0)


# ---- BPE vocabularies (tok_load) ----

put("bpe_empty.txt", b"", "bpe", "no newline; expected a BPE merges file")
put("bpe_header_only.txt.gz", gz(b"#version: 0.2\n"), "bpe",
    "0 merge lines, expected at least 48894")
put("bpe_three_fields.txt", b"#version: 0.2\ni n x\n", "bpe",
    "line 2: expected two space-separated symbols, found 'i n x'")
# 'zz' is neither a byte symbol nor the result of an earlier merge.
put("bpe_unknown_symbol.txt.gz", gz(b"#version: 0.2\nzz q\n" + b"i n\n" * (NMERGES - 1)),
    "bpe", "line 2: symbol 'zz' is neither a byte symbol nor made by an earlier merge")
# A gzip stream cut in the middle: zlib reports the early end.
full = gz(b"#version: 0.2\n" + b"".join(b"t%d h\n" % i for i in range(NMERGES)))
put("bpe_truncated.txt.gz", full[: len(full) // 2], "bpe", "gzip read error")

# ---- tokenizer input text (tok_encode) ----

put("text_empty.txt", b"", "text", "OK")
# Ill-formed UTF-8: lone continuation bytes, 0xFE/0xFF, a truncated
# sequence, an overlong '/', an encoded surrogate, a value above U+10FFFF.
put("text_invalid_utf8.txt",
    b"a \x80\xbf photo \xfe\xff of \xe2\x82 the \xc0\xaf cat \xed\xa0\x80 \xf4\x90\x80\x80.",
    "text", "OK")
put("text_nul.txt", b"a photo\x00 of a \x00\x00dog", "text", "OK")
put("text_controls.txt", b"a\r\nphoto\tof\x0b\x0c\x1b[31ma \xe2\x80\xa8cat\xef\xbb\xbf\x7f",
    "text", "OK")
put("text_specials.txt", b"<start_of_text><end_of_text>" * 40 + b"<START_OF_TEXT>", "text", "OK")
put("text_html.txt", b"&amp;amp;lt;b&amp;gt; &#0; &#x110000; &#xD800; &#99999999999; &bogus;",
    "text", "OK")
# One 20000-byte word (BPE on a long piece) and 5000 words (truncation).
put("text_long_word.txt", b"ab" * 10000, "text", "OK")
put("text_many_words.txt", b"photo " * 5000, "text", "OK")
put("text_combining.txt", "e\u0301\u0301\u0301 \u202e\u200d\U0001F468\u200d\U0001F469 "
    "\ufdfd \ufffd\uffff \U000E0001".encode("utf-8"), "text", "OK")

# ---- few-shot manifests (ds_fewshot_read) ----

put("fewshot_ok.tsv", b"# fewshot\npath\tlabel\tsplit\na.jpg\t0\ttrain\nc/d.png\t0\tval\n",
    "fewshot", "OK")
# The same item twice (this once wrote past the end of the selection).
put("fewshot_duplicate.tsv", b"a.jpg\t0\n" * 12, "fewshot",
    "fewshot_duplicate.tsv:2: 'a.jpg' is already listed on line 1")
put("fewshot_unknown.tsv", b"a.jpg\t0\nz.jpg\t0\n", "fewshot",
    "fewshot_unknown.tsv:2: 'z.jpg' is not an item of the dataset")
put("fewshot_label.tsv", b"b.jpg\t0\n", "fewshot", "'b.jpg' has label 0 here but 1")
put("fewshot_test_split.tsv", b"f.jpg\t1\ttest\n", "fewshot",
    "expected an integer label and split train or val")
put("fewshot_no_tab.tsv", b"a.jpg 0\n", "fewshot", "fewshot_no_tab.tsv:1: expected path<TAB>label")

# ---- caption files ----

put("cap_karpathy_ok.json", b'{"images": [{"filename": "a.jpg", "filepath": "x", "split": '
    b'"restval", "sentences": [{"raw": "a cat"}, {"raw": "caf\\u00e9"}]}]}', "karpathy", "OK")
put("cap_karpathy_dotdot.json", b'{"images": [{"filename": "../a.jpg", "split": "train", '
    b'"sentences": []}]}', "karpathy", "images[0]: path with a '..' component '../a.jpg'")
put("cap_karpathy_split.json", b'{"images": [{"filename": "a.jpg", "split": "dev", '
    b'"sentences": [{"raw": "x"}]}]}', "karpathy",
    "images[0]: split 'dev' is not train, val, test or restval")
put("cap_karpathy_no_raw.json", b'{"images": [{"filename": "a.jpg", "split": "test", '
    b'"sentences": [{"tokens": []}]}]}', "karpathy", "images[0].sentences[0]: no \"raw\" string")
put("cap_karpathy_no_split.json", b'{"images": [{"filename": "a.jpg", "sentences": []}]}',
    "karpathy", "images[0]: expected \"filename\", \"split\" and \"sentences\"")
put("cap_karpathy_no_images.json", b'{"annotations": []}', "karpathy",
    "expected an object with an \"images\" array")
put("cap_karpathy_empty.json", b'{"images": []}', "karpathy", "cap_karpathy_empty.json: no images")
put("cap_karpathy_dup_key.json", b'{"images": [], "images": []}', "karpathy",
    "duplicate key \"images\"")
put("cap_token_ok.txt", b"a.jpg#0\ta cat .\na.jpg#1\tanother .\nb.jpg#0\ta dog .\n", "token",
    "OK")
put("cap_token_no_hash.txt", b"a.jpg 0\tcaption\n", "token", "expected <image>#<n> before the tab")
put("cap_token_no_tab.txt", b"a.jpg#0 caption\n", "token", "expected <image>#<n><TAB>caption")
put("cap_token_dotdot.txt", b"../a.jpg#0\tcaption\n", "token", "path with a '..' component")
put("cap_token_empty.txt", b"\n\n", "token", "cap_token_empty.txt: no captions")
put("cap_tsv_ok.tsv", b"path\tcaption\na.jpg\ta cat\na.jpg\ta cat again\n", "caption_tsv", "OK")
put("cap_tsv_three_fields.tsv", b"path\tcaption\na.jpg\ta\tb\n", "caption_tsv",
    "cap_tsv_three_fields.tsv:2: more than two fields (captions cannot contain tabs)")
put("cap_tsv_no_tab.tsv", b"a.jpg\n", "caption_tsv",
    "cap_tsv_no_tab.tsv:1: expected path<TAB>caption")
put("cap_tsv_abs.tsv", b"/a.jpg\tcap\n", "caption_tsv", "absolute path '/a.jpg'")
put("cap_tsv_nul.tsv", b"a.jpg\tcap\x00x\n", "caption_tsv", "NUL byte in a text line")

for r in ROWS:
    print("\t".join(r))
