#!/usr/bin/python3
"""gen_tokenizer.py - reference cases for the C tokenizer (tests/test_tokenizer.c).

Run from the project root:
    MCLIP_REFENV=/work/refenv /usr/bin/python3 tests/reference/gen_tokenizer.py

Every id comes from the real open_clip tokenizer of MobileCLIP2
(open_clip.get_tokenizer('MobileCLIP2-S0'), a SimpleTokenizer with context 77
and clean='lower') with ftfy 6.3.1, set up by refcommon.setup().

Writes tests/fixtures/tokenizer_cases.tsv, lines of tab-separated fields:

  E  name  text  ftfy_changed  after_ftfy  n_untruncated  ids
  D  name  ids  decoded

text, after_ftfy and decoded are UTF-8 in hex (so any character is safe);
after_ftfy is "=" when ftfy.fix_text left the text unchanged; ids of E lines
are the 77 ids of tokenizer(text)[0] without the trailing 0 padding;
n_untruncated = len(tokenizer.encode(text)) + 2 (SOT and EOT).  D lines hold
ids and tokenizer.decode(ids).

Cases: every class name of datasets/classnames/*.txt, zero-shot and CoOp
("X X ... X name.") prompts, captions, and hand-written cases for accents,
NFD, scripts, emoji, ligatures, full width, quotes, mojibake, controls, HTML
entities, digits, punctuation, contractions, whitespace, special tokens,
exact-fit and truncated lengths; then seeded random strings and seeded
mojibake.
"""
import glob
import os
import random
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refcommon import setup  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer_cases.tsv")


def class_names():
    """(name, text) for each line of datasets/classnames/*.txt, first seen wins."""
    seen, out = set(), []
    for path in sorted(glob.glob(os.path.join(ROOT, "datasets", "classnames", "*.txt"))):
        tag = os.path.basename(path)[:-4]
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")
        k = 0
        for line in lines:
            if line.startswith("#") or line == "":
                continue
            line = line[:-1] if line.endswith("\r") else line
            k += 1
            if line not in seen:
                seen.add(line)
                out.append(("%s:%03d" % (tag, k), line))
    return out


def prompts(names):
    """Zero-shot templates and CoOp prompts for some of the names."""
    out = []
    pick = [t for n, t in names if n.startswith("flowers102_paper")]
    for k, t in enumerate(pick[:40]):
        out.append(("prompt_flowers:%02d" % k, "a photo of a %s, a type of flower." % t))
    for k, t in enumerate(pick[:30]):
        out.append(("coop16:%02d" % k, " ".join(["X"] * 16) + " " + t + "."))
    for k, t in enumerate([t for n, t in names if n.startswith("dtd_paper")][:20]):
        out.append(("prompt_dtd:%02d" % k, "%s texture." % t))
    for k, t in enumerate([t for n, t in names if n.startswith("sun397_coop")][::20]):
        out.append(("prompt_sun:%02d" % k, "a photo of a %s." % t))
    for k, t in enumerate([t for n, t in names if n.startswith("caltech101_coop")][::10]):
        out.append(("coop4:%02d" % k, "X X X X %s." % t))
    return out


CAPTIONS = [
    "Two young guys with shaggy hair look at their hands while hanging out in the yard.",
    "A man in a blue shirt is standing on a ladder cleaning windows.",
    "Several men in hard hats are operating a giant pulley system.",
    "A little girl climbing into a wooden playhouse.",
    "Two dogs of different breeds looking at each other on the road.",
    "A woman wearing a red coat walks past a café on a rainy evening in Paris.",
    "The 3 kids aren't playing; they're waiting for the 5:15 bus.",
    "An elderly couple dances at their 50th-anniversary party!",
    "A black-and-white photo of New York City's skyline, circa 1950.",
    "Close-up of a bee on a sunflower (Helianthus annuus).",
    "A chef prepares sushi at a restaurant counter in Tōkyō.",
    "\"Stop!\" shouts the referee as #10 falls.",
    "Someone's dog, a golden retriever, catches a frisbee mid-air.",
    "Mountains reflected in a still lake at sunrise — breathtaking.",
    "a photo of a cat.",
]


def hand_cases():
    c = []
    add = lambda name, text: c.append(("hand:" + name, text))
    # Flowers102 quirks (datasets.md 8.1) and hyphens.
    for i, t in enumerate([" pink primrose", "pink-yellow dahlia?", "cyclamen ", "hippeastrum ",
                           "blackberry lily,", "hard-leaved pocket orchid", "globe-flower",
                           "ruby-lipped cattleya", "black-eyed susan", "desert-rose"]):
        add("flowers_quirk%d" % i, t)
    for i, t in enumerate(CAPTIONS):
        add("caption%02d" % i, t)
    add("coop16_quirk", "X X X X X X X X X X X X X X X X  pink primrose.")
    add("coop16_q2", "X X X X X X X X X X X X X X X X pink-yellow dahlia?.")
    add("coop_lower_x", "x x x x x x x x x x x x x x x x rose.")
    # Accents, composed and decomposed.
    for i, t in enumerate(["café crème brûlée", "naïve résumé façade", "Ångström Dvořák Łódź",
                           "São Paulo Zürich Straße", "Tiếng Việt có dấu", "Ελληνικά ΆΈΉ",
                           "Ǆemal ǅemal ǆemal", "ẞ GROSSES ESZETT", "ÀÉÎÕÜ àéîõü"]):
        add("accent%d" % i, t)
        add("nfd%d" % i, unicodedata.normalize("NFD", t))
    add("nfd_reorder", "a\u0301\u0323 a\u0323\u0301 q\u0307\u0323 e\u0302\u0323")
    add("nfd_hangul_jamo", "\u1100\u1161\u11a8 \u1112\u1161\u11ab\u1100\u1173\u11af")
    add("nfd_korean", unicodedata.normalize("NFD", "한국어 사진"))
    add("nfc_singletons", "\u2126 \u212a \u212b \u0340\u0341 \u0374 \u037e \u1fee")
    add("nfc_exclusions", "\u0958 \u0915\u093c \ufb1d \u05d9\u05b4 \u2adc")
    add("combining_only", "\u0301\u0302 \u0300")
    add("ypogegrammeni", "\u03b1\u0345 \u1fb3 x\u0345y \u0345 \u1f80")
    # Scripts.
    scripts = ["一只猫的照片", "猫の写真です。", "고양이 사진", "صورة قطة جميلة", "תמונה של חתול",
               "बिल्ली की तस्वीर", "รูปแมวน่ารัก", "Фотография кошки", "Φωτογραφία γάτας",
               "ფოტო კატის", "Կատվի լուսանկար", "የድመት ፎቶ", "பூனையின் புகைப்படம்",
               "বিড়ালের ছবি", "Ảnh con mèo", "ΟΔΟΣ ΟΔΟΣ. ΣΊΣΥΦΟΣ Σ ΑΣ Σ. ΑΣ'Α ΑΣ\u0301"]
    for i, t in enumerate(scripts):
        add("script%02d" % i, t)
    # Emoji.
    for i, t in enumerate(["🐱", "cat 🐱 dog 🐶", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "🇫🇷🇯🇵🇺🇸",
                           "👍🏽 thumbs", "1️⃣ keycap", "❤️ heart ♥", "🧑🏿‍🚀", "😀😃😄😁"]):
        add("emoji%d" % i, t)
    # Ligatures, widths.
    add("ligatures", "ﬁsh ﬂower ﬀ ﬃ ﬄ ﬅ ﬆ Ĳssel ĳs ŉ")
    add("digraphs", "Ǳ ǲ ǳ Ǆ ǅ ǆ Ǉ ǈ ǉ Ǌ ǋ ǌ")
    add("fullwidth", "Ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ　１２３！")
    add("halfwidth_kana", "ｱｲｳｴｵ ﾀｰﾝ ｶﾞ")
    add("fullwidth_symbols", "＄１００ ￥５００ ￡ ￢ ￣ ￤ ￦ ｟ｆ｠")
    # Quotes.
    add("curly_double", "“quoted” „low“ ‟odd”")
    add("curly_single", "‘single’ it’s don’t ‛rev’ ʼokina")
    add("primes", "5′ 10″ ‹angle› «guillemets»")
    # Mojibake (hand-picked; more below).
    for i, t in enumerate(["cafÃ©", "â€œhelloâ€\x9d", "Ã  la mode", "Ã la mode", "voilÃ le travail",
                           "Ð¿Ñ€Ð¸Ð²ÐµÑ‚", "âœ” No problems", "Ã¢â‚¬Å“doubleÃ¢â‚¬Â\x9d", "sÃ³",
                           "â€œ like this â€�", "&macr;\\_(ã\x83\x84)_/&macr;", "Ã\xa0 quelle",
                           "Ã quele", "fÃ cil", "ÃƒÂ©", "Ãºnico", "Ð Ð¾ÑÑÐ¸Ñ", "Ã¦Â\x97Â¥Ã¦Â\x9cÂ¬",
                           "í ½í¸€", "À\x80", "Ã\x80 xÃ\n", "100Â°C", "10Â€", "quÃ©bec Ã\xa9tÃ\xa9",
                           "The Mona Lisa doesnâ€™t have eyebrows.", "â€¦ and more", "Î±Î²Î³",
                           "Ã¼ber", "â\x80\x9c", "Ãƒ", "ÃÂ", "Â£5", "Â¿QuÃ©?", "cÃ³mo estÃ¡s",
                           "ЁЯША", "вЂњquotesвЂќ", "Ă©", "Ã¶ and Ã¤ plus ÃŸ"]):
        add("mojibake%02d" % i, t)
    # Control characters and line breaks.
    for i, t in enumerate(["tab\there", "new\nline", "crlf\r\nline", "cr\ronly", "bell\x07char",
                           "\x00null", "\x1b[31mred\x1b[0m plain", "\x1b[1;32;40mbold\x1b[m",
                           "zero\u200bwidth", "\ufeffBOM start", "line\u2028sep para\u2029sep",
                           "nel\x85char", "soft\xadhyphen", "fs\x1cgs\x1drs\x1eus\x1f",
                           "c1 \x80\x81\x8d\x9d\x9f", "del\x7f", "\u206a\u206fdeprecated",
                           "\ufff9anno\ufffb \ufffc obj", "rtl \u200f\u202e mark", "tag\U000e0041",
                           "vt\x0bff\x0c"]):
        add("control%02d" % i, t)
    # HTML entities.
    for i, t in enumerate(["&amp;", "fish &amp; chips", "&amp;amp;", "&amp;amp;amp;", "&lt;b&gt;bold&lt;/b&gt;",
                           "<b>&amp;</b>", "<p>&eacute;</p>", "&#39;quoted&#39;", "&#x27;hex&#X27;",
                           "&#8217; &#8220;x&#8221;", "&#0; &#13; &#128; &#150; &#129;",
                           "&#x110000; &#xD800; &#65535; &#1114111; &#99999999999999999999;",
                           "&notit; &notin; &not it", "&amp &ampx &amp;x &AMP;", "AT&T R&D",
                           "&EACUTE; &Eacute; &eacute &eAcute;", "&nbsp;non&nbsp;breaking",
                           "&NotANamedEntity; &;", "&#x; &#; &# &#xg;", "&SZLIG; &NTILDE; &nTILDE;",
                           "&Jscr;ohn &HilbertSpace;ancock &checkmark;", "&hellip;&mdash;&ndash;",
                           "&copy;2024 &reg; &trade;", "&frac12; &sup2; &deg;", "&#x1F600; &#128512;",
                           "&lt;start_of_text&gt; x", "&amp;lt;end_of_text&amp;gt;", "&#38;amp;",
                           "&ACIRC;&EURO;", "&lt\n&gt", "line1 &amp;\n<line2> &amp;\nline3 &amp;",
                           "&#12ab; &#x41;&#x42 &#65&#66", "&zwnj;&zwj;&lrm;", "&Afr;&fjlig;&ffilig;",
                           "&CounterClockwiseContourIntegral;", "&DownLeftRightVector; &aacute;",
                           "&\u00e9acute;", "&\x00amp;", "&lt" + "x" * 40, "&" + "a" * 33 + ";"]):
        add("html%02d" % i, t)
    # Digits and numbers.
    for i, t in enumerate(["123456", "3.14159", "2024-01-01", "١٢٣ ۴۵۶", "①②③ ⑽", "Ⅻ ⅻ ↂ",
                           "x² y³ ½ ¾", "१२३ ๑๒๓", "0x1F 1e-5 -42", "𝟏𝟐𝟑 𝐀𝐁𝐂"]):
        add("digits%d" % i, t)
    # Punctuation.
    for i, t in enumerate(["!!!???...", "hello, world!", "(paren) [bracket] {brace}",
                           "email@example.com", "https://example.com/path?x=1&y=2#frag",
                           "C++ & C# | a/b \\ c", "—–- ‐‑‒", "¿Qué? ¡Hola!", "«»‹›", "…‥",
                           "§¶†‡•", "~`^_=+<>", "::;;,,", "a_b_c snake_case", "'''", "'"]):
        add("punct%02d" % i, t)
    # Contractions (case-insensitive in the reference's regex).
    for i, t in enumerate(["it's", "IT'S", "we're they've I'm you'll he'd", "don't can't won't",
                           "'s alone", "''s", "o'clock rock'n'roll", "'LL 'D 'VE", "x'sy",
                           "'ſ 'ſt", "'t's'll", "’s curly", "'re're"]):
        add("contract%02d" % i, t)
    # Whitespace.
    for i, t in enumerate(["  leading and trailing  ", "multiple   spaces\t\ttabs",
                           "\u00a0nbsp\u00a0", "\u3000ideographic\u3000", "\u2003em\u2002en\u2009thin",
                           "\u200bzwsp\u200b", "\t\n\r\x0b\x0c", "\u1680ogham\u202fnarrow\u205fmath",
                           "\u180emongolian", " \n \n ", "a\u2060b", "x\u2007y\u2008z"]):
        add("space%02d" % i, t)
    # Empty and near-empty.
    for i, t in enumerate(["", " ", "\n", "\u200b", "\x00", "&#0;", "\u0345", "!"]):
        add("empty%d" % i, t)
    # Literal special tokens.
    for i, t in enumerate(["<start_of_text>", "<end_of_text>", "a <end_of_text> b", "<START_OF_TEXT>",
                           "x<end_of_text>y", ".<end_of_text>", "<start_of_text><end_of_text>",
                           "<|endoftext|>", "<ſtart_of_text>", "< end_of_text >", "<end_of_text",
                           "<end_of_text>>", "<<start_of_text>"]):
        add("special%02d" % i, t)
    # Case and lowercase mapping.
    for i, t in enumerate(["PhOtO Of A CaT", "İstanbul IıİI", "ΑΒΓΔ", "ǅǈǋǲ", "Ω Ω K K Å Å",
                           "µ MICRO", "ſtop ẞ ß", "ᾼ ῌ ῼ ᾈ", "Ⓐ Ⓩ ⓐ", "𐐀𐐁 𐐨", "ꙀꙁꙂ Ꭰ ꭰ",
                           "\U0001E900\U0001E922", "ⅠⅡⅢ", "ＡＢＣ"]):
        add("case%02d" % i, t)
    # Lengths: exact fit (75 tokens), truncation (76), long texts, long pieces.
    add("fit75", " ".join(["a"] * 75))
    add("trunc76", " ".join(["a"] * 76))
    add("fit74_dot", " ".join(["cat"] * 74) + ".")
    add("trunc_long_words", " ".join(["photograph"] * 100))
    add("long_caption", " ".join(CAPTIONS))
    add("long_piece_letters", "a" * 300)
    add("long_piece_punct", "!?" * 150)
    add("long_digits", "0123456789" * 10)
    add("long_unicode", "ü" * 120 + " " + "猫" * 60)
    add("mixed_everything", "Ｃａｆé &amp; “ﬁsh” — 🐟 it’s 12€ <end_of_text> \u00a0 ΟΔΟΣ")
    return c


def mojibake_cases(rng):
    """Seeded mojibake: UTF-8 text decoded with another codec, sometimes twice,
    sometimes embedded in clean text or with 0xA0 turned into a space."""
    words = ["café", "naïve", "résumé", "Straße", "Ñandú", "Ørsted", "Łódź", "çà", "être",
             "“quoted”", "it’s", "—", "…", "€5", "±2°", "µm", "½", "Привет", "Ελλάδα", "日本語",
             "한국", "👍", "Zürich", "fiancée", "piñata", "São", "à", "Ä", "ß", "þ", "œuvre",
             "Dvořák", "Šibenik", "Ţară", "İzmir", "ğ", "Āķ", "ą", "ψ", "™", "©"]
    codecs = ["latin-1", "windows-1252", "windows-1251", "windows-1250", "windows-1253",
              "windows-1254", "windows-1257", "iso-8859-2", "mac_roman", "cp437"]
    out = []
    for k in range(260):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
        enc = rng.choice(codecs)
        bad = text.encode("utf-8").decode(enc, errors="replace")
        r = rng.random()
        if r < 0.15:
            bad = bad.encode("utf-8").decode(rng.choice(codecs[:2]), errors="replace")
        elif r < 0.35:
            bad = "plain " + bad + " " + rng.choice(words)
        elif r < 0.45:
            bad = bad.replace("\xa0", " ")
        elif r < 0.5:
            bad = bad.upper()
        out.append(("mojibake:%03d" % k, bad))
    return out


def fuzz_cases(rng):
    """Seeded random strings over a pool that exercises every cleaning step."""
    pool = (list("abcxyzABCXYZ0123456789 .,;:!?'\"-_()<>/&#") +
            ["&amp;", "&lt;", "&#39;", "&#x41;", "&eacute;", "&EACUTE;", "&nbsp", "&", "#",
             "\u00a0", "\t", "\n", "\r", "\u3000", "\u200b", "\u2028", "\x85", "\x1b[0m",
             "\x00", "\x07", "\x7f", "\x80", "\x93", "\x9d", "\ufeff", "\u0301", "\u0308",
             "\u0323", "\u0345", "e\u0301", "\u1100\u1161", "\u11a8", "é", "ñ", "ü", "ß",
             "Ã", "Â", "â", "€", "œ", "™", "©", "®", "°", "±", "¢", "£", "¥", "§", "¶", "·",
             "»", "«", "¦", "¤", "¨", "¬", "¯", "¸", "ƒ", "ˆ", "˜", "†", "‡", "‰", "◊", "�",
             "ª", "º", "¡", "¿", "Ø", "Ù", "Œ", "Ð", "Î", "×", "²", "√", "≈", "‚", "Ä", "в",
             "Ђ", "Г", "ў", "В", "β", "Ά", "Ξ", "ā", "╬", "▓", "│", "Ò", "ò", "µ", "¼",
             "“", "”", "‘", "’", "ﬁ", "ﬂ", "Ｆ", "１", "ｱ", "Σ", "İ", "ſ", "ǅ", "Ω", "Å",
             "猫", "한", "🐱", "👍🏽", "🇫🇷", "‍", "️", "١", "Ⅻ", "①", "<end_of_text>",
             "<start_of_text>", "'s", "'LL", "ÃƒÂ", "Ã©", "â€™", "â€œ", "Ã\xa0", "Ã ",
             "Ð¿", "Ñ€", "í ½", "À\x80", "Â "])
    out = []
    for k in range(360):
        n = rng.randint(1, 14)
        out.append(("fuzz:%03d" % k, "".join(rng.choice(pool) for _ in range(n))))
    return out


def hx(s):
    return s.encode("utf-8", errors="surrogatepass").hex()


def main():
    torch, open_clip = setup()
    import ftfy
    tok = open_clip.get_tokenizer("MobileCLIP2-S0")
    assert tok.context_length == 77 and tok.vocab_size == 49408

    names = class_names()
    rng = random.Random(20240917)
    cases = names + prompts(names) + hand_cases() + mojibake_cases(rng) + fuzz_cases(rng)
    assert len({n for n, _ in cases}) == len(cases), "duplicate case names"
    for _, t in cases:
        assert "\t" not in hx(t)

    lines = ["# tokenizer_cases.tsv - GENERATED by tests/reference/gen_tokenizer.py; do not edit.",
             "# open_clip %s get_tokenizer('MobileCLIP2-S0'), ftfy %s; fields in the script header."
             % (open_clip.__version__, ftfy.__version__)]
    n_changed = n_trunc = 0
    for name, text in cases:
        ids = tok([text])[0].tolist()
        n_untrunc = len(tok.encode(text)) + 2
        fixed = ftfy.fix_text(text)
        changed = fixed != text
        n_changed += changed
        n_trunc += n_untrunc > 77
        while ids and ids[-1] == 0:
            ids.pop()
        lines.append("E\t%s\t%s\t%d\t%s\t%d\t%s" % (name, hx(text), changed,
                     hx(fixed) if changed else "=", n_untrunc, " ".join(map(str, ids))))
    # Decode cases: the content ids of the hand cases, a full padded row, and
    # id sequences that split UTF-8 characters.
    dec = []
    for name, text in hand_cases():
        ids = tok.encode(text)[:75]
        dec.append(("dec:" + name[5:], ids))
    dec.append(("dec:full_row", tok(["a photo of a cat."])[0].tolist()))
    dec.append(("dec:split_emoji", tok.encode("🐱")[:1]))
    dec.append(("dec:split_emoji_rev", tok.encode("🐱")[1:] + tok.encode("🐱")[:1]))
    dec.append(("dec:byte_tokens", list(range(0, 512, 7))))
    dec.append(("dec:specials", [49406, 49407, 49406]))
    dec.append(("dec:end_marker_split", tok.encode("<") + tok.encode("/w") + tok.encode(">")))
    for name, ids in dec:
        lines.append("D\t%s\t%s\t%s" % (name, " ".join(map(str, ids)), hx(tok.decode(ids))))
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s: %d encode cases (%d changed by ftfy, %d truncated), %d decode cases, %d bytes"
          % (OUT, len(cases), n_changed, n_trunc, len(dec), os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
