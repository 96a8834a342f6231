#!/usr/bin/python3
"""gen_preprocess.py - reference results for datasets/image.c, resize.c and
preprocess.c from PIL (Pillow 9.4) and open_clip's eval transform
(torchvision 0.14), as Debian packages them.

Run from the project root:
    MCLIP_REFENV=/work/refenv /usr/bin/python3 tests/reference/gen_preprocess.py

Writes
  tests/fixtures/images/*.png|jpg|gif|bmp  small test files in many modes
  tests/fixtures/images/expected.safetensors
  tests/malformed/images/*                  damaged and non-image files

The large procedural images are not stored: tests/test_preprocess.c builds
the same pixels from synth() below (integer arithmetic only), and this file
stores what PIL makes of them: CRC-32s of the whole resized image, of the
crop and of the float tensor (exact checks), plus a few rows of the crop
for diagnostics.  Keys (U8 unless noted):

  synth.<W>x<H>.<cfg>.crc      I64 [3] crc32 of resized [H',W',3], crop
                               [S,S,3], float32 tensor [3,S,S]
  synth.<W>x<H>.<cfg>.geom     I64 [4] W', H', left, top
  synth.<W>x<H>.<cfg>.rows     [3, S, 3] crop rows 0, S/2, S-1
  resize.<W>x<H>.<filter>.<OW>x<OH>   [OH, OW, 3] PIL Image.resize, whole
  file.<name>.rgb              [H, W, 3] PIL open(...).convert("RGB")
  file.<name>.<cfg>.crc        I64 [2] crc32 of crop and float tensor, the
                               paper's order: convert("RGB") then transform
  file.<name>.<cfg>.oc         I64 [2] the same, open_clip's order: the
                               transform on the image as opened (it resizes
                               and crops in the file's mode, then converts)
  file.<name>.<cfg>.ocrows     [3, S, 3] rows 0, S/2, S-1 of that RGB crop,
                               only where the two orders differ
  metadata mode.<name>         the mode PIL opens the file in
  modes.sizes                  I64 [n, 2] (W, H) of the procedural images in
                               PIL modes (synth_mode below)
  modes.<mode>.<cfg>.<order>   I64 [n, 2] crc32 of RGB crop and tensor for
                               each size, <order> "openclip" or "paper"
  resize_i.<W>x<H>.<filter>.<OW>x<OH>  I32 [OH, OW] Image.resize in mode I
  nearest.<n>.<m>              I32 [m] source index of each output of a
                               NEAREST resize n -> m (PIL's running sum)
  alpha.crc                    I64 [2] crc32 of PIL's RGBA -> RGBa table and
                               RGBa -> RGBA table over all (v, a), [v, a]
with <cfg> "bilinear256" (mean 0, std 1) or "bicubic224" (OpenAI mean/std).
"""
import io
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refcommon  # noqa: E402

FIX = "tests/fixtures/images"
BAD = "tests/malformed/images"

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
CONFIGS = [("bilinear256", 256, "bilinear", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
           ("bicubic224", 224, "bicubic", OPENAI_MEAN, OPENAI_STD)]

# Procedural sizes: odd, portrait/landscape, exact S, short side = S, thin,
# strong reduction, crop offsets with .5 rounding both ways.
SYNTH_SIZES = [(37, 53), (53, 37), (341, 200), (200, 341), (400, 300), (300, 400),
               (256, 256), (224, 300), (1, 1), (2, 5), (3000, 17), (17, 3000),
               (1000, 700), (257, 256), (259, 256), (261, 256), (225, 224)]

# Plain Image.resize cases, stored whole: both passes, one pass only, strong
# reduction (wide support), enlargement, 1x1.
RESIZES = [((400, 300), (85, 64)), ((160, 120), (49, 120)), ((160, 120), (160, 31)),
           ((37, 53), (64, 91)), ((1000, 700), (100, 33)), ((1, 1), (5, 3)),
           ((53, 37), (53, 37))]

M32 = np.uint32(0xFFFFFFFF)

# Procedural images in PIL's other modes: the sizes (a subset of
# SYNTH_SIZES: enlargement, reduction, short side = S, thin, 1x1).
MODE_SIZES = [(37, 53), (53, 37), (341, 200), (400, 300), (300, 400), (256, 256),
              (224, 300), (1, 1), (2, 5), (3000, 17), (1000, 700), (261, 256)]
MODES = ["1", "L", "LA", "P", "RGBA", "CMYK", "I"]

# Mode "I" resizes stored whole, and NEAREST index maps where PIL's running
# sum truncates to another index than int((i + 0.5) * n / m).
RESIZES_I = [((23, 17), (9, 11)), ((23, 17), (40, 23)), ((23, 17), (23, 50)),
             ((61, 7), (5, 3))]
NEAREST_MAPS = [(3, 7), (10, 3), (244, 366), (256, 224), (310, 341), (1000, 81)]


def hash32(x):
    """A 32-bit integer mix (same constants as tests/test_preprocess.c)."""
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def synth(w, h, seed=1):
    """[h, w, 3] uint8: noise, a saturated 0/255 checker (bicubic overshoot is
    clipped) and a wrapping gradient, in 16-pixel diagonal bands."""
    U = np.uint32
    y, x, c = np.meshgrid(np.arange(h, dtype=U), np.arange(w, dtype=U), np.arange(3, dtype=U),
                          indexing="ij")
    with np.errstate(over="ignore"):
        key = (y * U(65599) + x) * U(4) + c + U(seed) * U(0x9E3779B9)
        noise = hash32(key) & U(255)
    region = ((x >> U(4)) + (y >> U(4))) % U(3)
    checker = np.where(((x >> U(2)) + (y >> U(2))) & U(1), 255, 0).astype(U)
    grad = (x * U(255) // U(max(w - 1, 1)) + y * U(3) + c * U(40)) & U(255)
    v = np.where(region == 0, noise, np.where(region == 1, checker, grad))
    return v.astype(np.uint8)


def synth_c(w, h, C, seed=1):
    """synth() with C channels (the same formula for c = 3)."""
    U = np.uint32
    y, x, c = np.meshgrid(np.arange(h, dtype=U), np.arange(w, dtype=U), np.arange(C, dtype=U),
                          indexing="ij")
    with np.errstate(over="ignore"):
        key = (y * U(65599) + x) * U(4) + c + U(seed) * U(0x9E3779B9)
        noise = hash32(key) & U(255)
    region = ((x >> U(4)) + (y >> U(4))) % U(3)
    checker = np.where(((x >> U(2)) + (y >> U(2))) & U(1), 255, 0).astype(U)
    grad = (x * U(255) // U(max(w - 1, 1)) + y * U(3) + c * U(40)) & U(255)
    v = np.where(region == 0, noise, np.where(region == 1, checker, grad))
    return v.astype(np.uint8)


def mode_palette():
    """The 256-entry palette of the procedural "P" images: entry k, channel c
    = (k * (37 + 54 c) + 11 c) mod 256."""
    k, c = np.meshgrid(np.arange(256), np.arange(3), indexing="ij")
    return ((k * (37 + 54 * c) + 11 * c) & 255).astype(np.uint8)


def synth_mode(w, h, mode):
    """A PIL image of mode from synth_c(w, h, 4) = channels s0..s3:
    1: s0 >= 128; L: s0; LA: s0, s3; P: index s0 into mode_palette();
    RGBA, CMYK: s0..s3; I: s0 + s1 // 4 (0..318, so the clip shows)."""
    s4 = synth_c(w, h, 4)
    if mode == "1":
        return Image.fromarray(s4[..., 0] >= 128)
    if mode == "L":
        return Image.fromarray(s4[..., 0], "L")
    if mode == "LA":
        return Image.fromarray(np.ascontiguousarray(s4[..., [0, 3]]), "LA")
    if mode == "P":
        im = Image.fromarray(s4[..., 0], "P")
        im.putpalette(mode_palette().reshape(-1).tolist())
        return im
    if mode in ("RGBA", "CMYK"):
        return Image.fromarray(s4, mode)
    assert mode == "I"
    return Image.fromarray(s4[..., 0].astype(np.int32) + (s4[..., 1] >> 2), "I")


def photo(w, h, seed=3):
    """Photo-like content for JPEG: smooth shapes, soft edges, mild noise."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        img[..., c] = 90 + 60 * np.sin(xx / (9 + 4 * c)) * np.cos(yy / (13 - 3 * c))
    for _ in range(6):
        cx, cy, rad = r.uniform(0, w), r.uniform(0, h), r.uniform(4, max(w, h) / 3)
        col = r.uniform(0, 255, 3)
        m = 1 / (1 + np.exp(np.hypot(xx - cx, yy - cy) - rad))
        img = img * (1 - m[..., None]) + col * m[..., None]
    img += r.normal(0, 4, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def crc(a):
    return zlib.crc32(np.ascontiguousarray(a).tobytes()) & 0xFFFFFFFF


# ---- a small PNG writer for the modes PIL cannot write ----

def png_chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def png_rows(a, bits):
    """Raw scanlines (filter 0) of a [h, w, k] integer array."""
    h, w = a.shape[:2]
    out = []
    for y in range(h):
        row = a[y].reshape(-1)
        if bits == 16:
            out.append(b"\0" + row.astype(">u2").tobytes())
        elif bits == 8:
            out.append(b"\0" + row.astype(np.uint8).tobytes())
        else:
            per = 8 // bits
            pad = (-len(row)) % per
            r = np.concatenate([row, np.zeros(pad, dtype=row.dtype)])
            r = r.astype(np.uint8).reshape(-1, per)
            packed = np.zeros(len(r), dtype=np.uint8)
            for i in range(per):
                packed |= (r[:, i] << (8 - bits * (i + 1))).astype(np.uint8)
            out.append(b"\0" + packed.tobytes())
    return b"".join(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def png_bytes(a, ct, bits, plte=None, trns=None, interlace=0, iend=True):
    if a.ndim == 2:
        a = a[..., None]
    h, w = a.shape[:2]
    if interlace:
        raw = b"".join(png_rows(a[y0::dy, x0::dx], bits) for x0, y0, dx, dy in ADAM7
                       if a[y0::dy, x0::dx].size)
    else:
        raw = png_rows(a, bits)
    ihdr = struct.pack(">IIBBBBB", w, h, bits, ct, 0, 0, interlace)
    s = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    if plte is not None:
        s += png_chunk(b"PLTE", bytes(plte))
    if trns is not None:
        s += png_chunk(b"tRNS", bytes(trns))
    s += png_chunk(b"IDAT", zlib.compress(raw, 9))
    if iend:
        s += png_chunk(b"IEND", b"")
    return s


def bmp_v4_rgba(a):
    """A 32-bit BMP with a BITMAPV4HEADER and B, G, R, A bit fields (PIL
    writes RGBA as BI_RGB, which it reads back as RGB)."""
    h, w = a.shape[:2]
    data = np.ascontiguousarray(a[::-1][..., [2, 1, 0, 3]]).tobytes()
    hdr = struct.pack("<IiiHHIIiiII", 108, w, h, 1, 32, 3, len(data), 2835, 2835, 0, 0)
    hdr += struct.pack("<IIII", 0xFF0000, 0xFF00, 0xFF, 0xFF000000) + b"sRGB" + bytes(48)
    return b"BM" + struct.pack("<IHHI", 14 + len(hdr) + len(data), 0, 0, 14 + len(hdr)) + hdr + data


# ---- test files ----

def make_files():
    """name -> bytes of the small committed test images."""
    r = np.random.default_rng(7)
    F = {}
    rgb = synth(37, 53, seed=5)
    gray = synth(29, 23, seed=6)[..., 0]
    F["rgb8.png"] = png_bytes(rgb, 2, 8)
    F["rgb8_interlaced.png"] = png_bytes(synth(23, 19, seed=8), 2, 8, interlace=1)
    F["rgb8_trns.png"] = png_bytes(synth(21, 17, seed=9), 2, 8, trns=struct.pack(">HHH", 0, 255, 0))
    F["rgb8_no_iend.png"] = png_bytes(synth(19, 13, seed=10), 2, 8, iend=False)
    F["gray8.png"] = png_bytes(gray, 0, 8)
    F["gray1.png"] = png_bytes(r.integers(0, 2, (13, 27)), 0, 1)
    F["gray2_interlaced.png"] = png_bytes(r.integers(0, 4, (17, 15)), 0, 2, interlace=1)
    F["gray4.png"] = png_bytes(r.integers(0, 16, (11, 9)), 0, 4)
    g16 = r.integers(0, 65536, (17, 23))
    g16[::2] = r.integers(0, 300, (9, 23))          # many values <= 255 so the clip shows
    F["gray16.png"] = png_bytes(g16, 0, 16)
    F["gray_alpha8.png"] = png_bytes(np.stack([gray, synth(29, 23, 11)[..., 1]], -1), 4, 8)
    F["gray_alpha16.png"] = png_bytes(r.integers(0, 65536, (13, 11, 2)), 4, 16)
    F["rgba8.png"] = png_bytes(synth(31, 22, seed=12).repeat(2, axis=2)[..., :4], 6, 8)
    F["rgb16.png"] = png_bytes(r.integers(0, 65536, (15, 19, 3)), 2, 16)
    F["rgba16.png"] = png_bytes(r.integers(0, 65536, (14, 9, 4)), 6, 16)
    # Palette with 5 entries but indices up to 255 (PIL pads with the gray
    # ramp), and a tRNS table.
    pidx = r.integers(0, 256, (19, 25))
    pidx[::3] = r.integers(0, 5, (7, 25))
    F["palette8_short.png"] = png_bytes(pidx, 3, 8, plte=r.integers(0, 256, 15), trns=[0, 128])
    F["palette4.png"] = png_bytes(r.integers(0, 16, (13, 17)), 3, 4, plte=r.integers(0, 256, 48))

    # JPEGs written by PIL's libjpeg-turbo.
    ph = photo(64, 48)

    def jpg(im, **kw):
        b = io.BytesIO()
        im.save(b, "JPEG", **kw)
        return b.getvalue()
    F["photo420.jpg"] = jpg(Image.fromarray(photo(160, 120, seed=4)), quality=90)
    F["q95_444.jpg"] = jpg(Image.fromarray(ph), quality=95, subsampling=0)
    F["q75_422.jpg"] = jpg(Image.fromarray(ph), quality=75, subsampling=1)
    F["odd420.jpg"] = jpg(Image.fromarray(photo(37, 53, seed=5)), quality=85, subsampling=2)
    F["progressive.jpg"] = jpg(Image.fromarray(ph), quality=90, progressive=True)
    F["gray.jpg"] = jpg(Image.fromarray(photo(45, 31, seed=6)[..., 1]), quality=90)
    cmyk = np.concatenate([photo(40, 30, seed=7), photo(40, 30, seed=8)[..., :1]], -1)
    F["cmyk.jpg"] = jpg(Image.fromarray(cmyk, "CMYK"), quality=92)
    # The same CMYK data without its Adobe marker: PIL (and libjpeg) still
    # read CMYK; the stb_image backend refuses it.
    c = F["cmyk.jpg"]
    a = c.index(b"\xff\xee")
    F["cmyk_no_adobe.jpg"] = c[:a] + c[a + 2 + struct.unpack(">H", c[a + 2:a + 4])[0]:]
    F["noise420.jpg"] = jpg(Image.fromarray(synth(48, 40, seed=13)), quality=90)
    # EXIF orientation 6 (rotate 90): PIL's open ignores it, so must we.
    exif = Image.Exif()
    exif[0x0112] = 6
    F["exif_rot90.jpg"] = jpg(Image.fromarray(photo(40, 24, seed=9)), quality=90,
                              exif=exif.tobytes())

    # GIF with a transparent index, BMPs.
    p = Image.fromarray(r.integers(0, 6, (17, 23)).astype(np.uint8), "P")
    p.putpalette(list(r.integers(0, 256, 18)))
    b = io.BytesIO()
    p.save(b, "GIF", transparency=2)
    F["palette_trns.gif"] = b.getvalue()
    # The same frame on a larger 30x25 screen at (3, 4), with and without a
    # transparent index: PIL fills the rest of the canvas with that index.
    for name, kw in (("partial_frame.gif", {}), ("partial_frame_trns.gif", {"transparency": 2})):
        b = io.BytesIO()
        p.save(b, "GIF", **kw)
        d = bytearray(b.getvalue())
        i = d.index(b"\x2c", 13)
        d[6:10] = struct.pack("<HH", 30, 25)
        d[i + 1:i + 5] = struct.pack("<HH", 3, 4)
        F[name] = bytes(d)
    b = io.BytesIO()
    Image.fromarray(synth(23, 17, seed=14)).save(b, "BMP")
    F["rgb24.bmp"] = b.getvalue()

    # Modes where open_clip's order (resize, then convert) matters.
    # RGBA: transparent bands with colour under them, opaque bands, an
    # alpha gradient and noisy alpha (PIL resizes RGBA premultiplied).
    yy, xx = np.mgrid[0:30, 0:41]
    band = (xx // 5) % 4
    alpha = np.select([band == 0, band == 1, band == 2],
                      [0, 255, (yy * 255) // 29], r.integers(0, 256, (30, 41)))
    F["rgba8_alpha.png"] = png_bytes(np.dstack([synth(41, 30, seed=16), alpha]), 6, 8)
    # LA with the same bands.
    F["gray_alpha8_bands.png"] = png_bytes(np.dstack([synth(41, 30, seed=17)[..., 0], alpha]),
                                           4, 8)
    # 16-bit gray around the clip: 0..400 (mode I; bicubic undershoots 0).
    g16 = np.where(synth(27, 19, seed=18)[..., 0] >= 128, 400, 0)
    g16[::4] = r.integers(0, 401, g16[::4].shape)
    F["gray16_low.png"] = png_bytes(g16, 0, 16)
    # Gray with a tRNS colour (stays mode L).
    F["gray8_trns.png"] = png_bytes(synth(19, 23, seed=19)[..., 0], 0, 8,
                                    trns=struct.pack(">H", 255))
    # GIF whose colour table is the gray ramp: PIL opens it as L.
    g = Image.fromarray(synth(21, 18, seed=20)[..., 2], "P")
    g.putpalette([v for i in range(256) for v in (i, i, i)])
    b = io.BytesIO()
    g.save(b, "GIF", optimize=False)
    F["gray_ramp.gif"] = b.getvalue()
    # BMPs: gray ramp palette (L), black and white (1), 32-bit V4 bit fields
    # with alpha (RGBA), and the same with alpha 0 everywhere.
    b = io.BytesIO()
    Image.fromarray(synth(22, 15, seed=21)[..., 1], "L").save(b, "BMP")
    F["gray_ramp.bmp"] = b.getvalue()
    b = io.BytesIO()
    Image.fromarray(synth(27, 14, seed=22)[..., 0] >= 128).save(b, "BMP")
    F["bilevel.bmp"] = b.getvalue()
    rgba = np.dstack([synth(19, 13, seed=23), alpha[:13, :19]]).astype(np.uint8)
    F["rgba32_v4.bmp"] = bmp_v4_rgba(rgba)
    rgba[..., 3] = 0
    F["rgba32_alpha0.bmp"] = bmp_v4_rgba(rgba)
    b = io.BytesIO()
    Image.fromarray(synth(21, 15, seed=15)).quantize(40).save(b, "BMP")
    F["palette8.bmp"] = b.getvalue()
    return F


def make_malformed(F):
    """name -> bytes of damaged and non-image files."""
    jpg, png = F["photo420.jpg"], F["rgb8.png"]
    M = {}
    M["empty.jpg"] = b""
    M["text.jpg"] = b"this is a text file, not a picture\n"
    M["document.png"] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
    M["page.jpg"] = b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n"
    M["webp.jpg"] = b"RIFF\x24\0\0\0WEBPVP8 " + bytes(28)
    M["truncated_half.jpg"] = jpg[: len(jpg) // 2]
    M["truncated_no_eoi.jpg"] = jpg[:-2]
    M["truncated_header.jpg"] = jpg[:300]
    M["soi_only.jpg"] = b"\xff\xd8"
    i = jpg.index(b"\xff\xc0")
    M["arithmetic.jpg"] = jpg[:i] + b"\xff\xc9" + jpg[i + 2:]
    M["twelve_bit.jpg"] = jpg[:i + 4] + b"\x0c" + jpg[i + 5:]
    M["giant.jpg"] = jpg[:i + 5] + struct.pack(">HH", 60000, 60000) + jpg[i + 9:]
    j = jpg.index(b"\xff\xc4")
    M["bad_huffman_table.jpg"] = jpg[:j + 4] + b"\x35" + jpg[j + 5:]
    M["huffman_overflow.jpg"] = jpg[:j + 5] + b"\xff" * 16 + jpg[j + 21:]
    q = jpg.index(b"\xff\xdb")
    M["bad_quant_table.jpg"] = jpg[:q + 4] + b"\x25" + jpg[q + 5:]
    # Damage only the decoder sees (the marker structure is intact): a
    # Huffman table with 3 codes of length 1, sampling factors 2x2 against
    # 3x1 (no integer ratio), a progressive DC scan with Al = 14 (above 13).
    n = sum(jpg[j + 5:j + 21])
    M["huffman_oversubscribed.jpg"] = (jpg[:j + 5] + bytes([3] + [0] * 14 + [n - 3]) +
                                       jpg[j + 21:])
    M["sampling_fraction.jpg"] = jpg[:i + 14] + b"\x31" + jpg[i + 15:]
    M["sof_two_components.jpg"] = jpg[:i + 9] + b"\x02" + jpg[i + 10:]
    prog = F["progressive.jpg"]
    s = prog.index(b"\xff\xda")
    ns = prog[s + 4]
    M["bad_progression.jpg"] = prog[:s + 7 + 2 * ns] + b"\x0e" + prog[s + 8 + 2 * ns:]
    M["truncated_idat.png"] = png[: len(png) - 40]
    M["truncated_signature.png"] = png[:20]
    M["crlf_signature.png"] = png[:4] + b"\n" + png[6:]
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    M["giant_ihdr.png"] = (png[:8] + png_chunk(b"IHDR", ihdr) + png[33:])
    def with_ihdr(*fields):
        return png[:8] + png_chunk(b"IHDR", struct.pack(">IIBBBBB", *fields)) + png[33:]
    M["zero_width.png"] = with_ihdr(0, 10, 8, 2, 0, 0, 0)
    M["bad_color_type.png"] = with_ihdr(37, 53, 8, 5, 0, 0, 0)
    k = png.index(b"IDAT") + 4
    scrambled = bytes(b ^ 0x5A for b in png[k + 2:k + 200])
    M["corrupt_idat.png"] = png[:k + 2] + scrambled + png[k + 200:]
    M["no_idat.png"] = png[:33] + png_chunk(b"IEND", b"")
    M["truncated.gif"] = F["palette_trns.gif"][:40]
    M["truncated.bmp"] = F["rgb24.bmp"][:200]
    M["header_only.gif"] = b"GIF89a\x10\x00\x10\x00\x00\x00\x00\x3b"
    return M


# ---- reference results ----

def transforms(torch, oc):
    from open_clip.transform import image_transform
    out = {}
    for name, S, interp, mean, std in CONFIGS:
        t = image_transform(S, is_train=False, mean=mean, std=std, interpolation=interp)
        out[name] = (S, t)
    return out


def run_pipeline(img, S, t):
    """PIL image -> (resized, RGB crop u8, float tensor) through open_clip's
    eval transform [Resize, CenterCrop, convert RGB, ToTensor, Normalize];
    checks that its steps compose to the whole."""
    names = [type(s).__name__ for s in t.transforms]
    assert names == ["Resize", "CenterCrop", "MaybeConvertMode", "MaybeToTensor",
                     "Normalize"], names
    resize, crop, convert = t.transforms[0], t.transforms[1], t.transforms[2]
    resized = resize(img)
    cropped = convert(crop(resized))
    assert cropped.mode == "RGB"
    x = t(img).numpy()
    x2 = t.transforms[4](t.transforms[3](cropped)).numpy()
    assert np.array_equal(x, x2)
    return np.asarray(resized), np.asarray(cropped), x


def crop_crcs(img, S, t):
    """I64 [2] crc32 of the RGB crop and the float tensor, and the crop."""
    _, cropped, x = run_pipeline(img, S, t)
    return np.array([crc(cropped), crc(x.astype("<f4"))], np.int64), cropped


def nearest_map(n, m):
    """PIL's NEAREST source index for each of m outputs from n inputs."""
    im = Image.fromarray(np.arange(n, dtype=np.int32).reshape(1, n), "I")
    return np.asarray(im.resize((m, 1), Image.NEAREST))[0].astype(np.int32)


def alpha_tables():
    """crc32 of PIL's premultiply table [v, a] and of its inverse."""
    v, a = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    va = np.stack([v, a], -1).astype(np.uint8)
    pm = np.asarray(Image.fromarray(va, "LA").convert("La"))[..., 0]
    um = np.asarray(Image.frombytes("La", (256, 256), va.tobytes()).convert("LA"))[..., 0]
    rgba = np.stack([v, v, v, a], -1).astype(np.uint8)
    pm4 = np.asarray(Image.fromarray(rgba, "RGBA").convert("RGBa"))
    um4 = np.asarray(Image.frombytes("RGBa", (256, 256), rgba.tobytes()).convert("RGBA"))
    # RGBa and La agree, on every colour channel.
    for k in range(3):
        assert np.array_equal(pm4[..., k], pm) and np.array_equal(um4[..., k], um)
    return np.array([crc(pm), crc(um)], np.int64)


def main():
    torch, oc = refcommon.setup()
    T = transforms(torch, oc)
    os.makedirs(FIX, exist_ok=True)
    os.makedirs(BAD, exist_ok=True)
    out, meta = {}, {"generator": "tests/reference/gen_preprocess.py",
                     "pillow": Image.__version__}

    # Procedural images through the whole transform.
    for w, h in SYNTH_SIZES:
        img = Image.fromarray(synth(w, h))
        for cfg, _, _, _, _ in CONFIGS:
            S, t = T[cfg]
            resized, cropped, x = run_pipeline(img, S, t)
            rh, rw = resized.shape[:2]
            left, top = int(round((rw - S) / 2.0)), int(round((rh - S) / 2.0))
            key = f"synth.{w}x{h}.{cfg}"
            crcs = [crc(resized), crc(cropped), crc(x.astype("<f4"))]
            out[key + ".crc"] = np.array(crcs, np.int64)
            out[key + ".geom"] = np.array([rw, rh, left, top], np.int64)
            out[key + ".rows"] = cropped[[0, S // 2, S - 1]]

    # Plain resizes, stored whole.
    filters = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
    for (w, h), (ow, oh) in RESIZES:
        img = Image.fromarray(synth(w, h))
        for fname, f in filters.items():
            out[f"resize.{w}x{h}.{fname}.{ow}x{oh}"] = np.asarray(img.resize((ow, oh), f))

    # Mode "I" resizes, NEAREST index maps, the premultiplied-alpha tables.
    for (w, h), (ow, oh) in RESIZES_I:
        s4 = synth_c(w, h, 4, seed=3).astype(np.int32)
        img = Image.fromarray(s4[..., 0] * 256 + s4[..., 1], "I")
        for fname, f in filters.items():
            out[f"resize_i.{w}x{h}.{fname}.{ow}x{oh}"] = np.asarray(img.resize((ow, oh), f))
    for n, m in NEAREST_MAPS:
        out[f"nearest.{n}.{m}"] = nearest_map(n, m)
    out["alpha.crc"] = alpha_tables()

    # Procedural images in PIL modes through the transform, both orders.
    out["modes.sizes"] = np.array(MODE_SIZES, np.int64)
    for mode in MODES:
        for cfg, _, _, _, _ in CONFIGS:
            S, t = T[cfg]
            oc, paper = [], []
            for w, h in MODE_SIZES:
                img = synth_mode(w, h, mode)
                assert img.mode == mode
                oc.append(crop_crcs(img, S, t)[0])
                paper.append(crop_crcs(img.convert("RGB"), S, t)[0])
            out[f"modes.{mode}.{cfg}.openclip"] = np.array(oc)
            out[f"modes.{mode}.{cfg}.paper"] = np.array(paper)

    # Committed files: PIL's decode and the transform on it, in both orders.
    F = make_files()
    for name, data in sorted(F.items()):
        with open(os.path.join(FIX, name), "wb") as f:
            f.write(data)
        im = Image.open(io.BytesIO(data))
        meta["mode." + name] = im.mode
        rgb = im.convert("RGB")
        out[f"file.{name}.rgb"] = np.asarray(rgb)
        for cfg, _, _, _, _ in CONFIGS:
            S, t = T[cfg]
            paper, _ = crop_crcs(rgb, S, t)
            oc, cropped = crop_crcs(Image.open(io.BytesIO(data)), S, t)
            out[f"file.{name}.{cfg}.crc"] = paper
            out[f"file.{name}.{cfg}.oc"] = oc
            if oc[0] != paper[0]:
                out[f"file.{name}.{cfg}.ocrows"] = cropped[[0, S // 2, S - 1]]

    # Damaged files: PIL must refuse each one too (except where noted).
    for name, data in sorted(make_malformed(F).items()):
        with open(os.path.join(BAD, name), "wb") as f:
            f.write(data)
        try:
            im = Image.open(io.BytesIO(data))
            im.load()
            meta["pil." + name] = "decoded"
        except Exception as e:  # noqa: BLE001 - any failure is the point
            meta["pil." + name] = type(e).__name__

    refcommon.save_safetensors(os.path.join(FIX, "expected.safetensors"), out, meta)
    total = sum(os.path.getsize(os.path.join(d, n)) for d in (FIX, BAD) for n in os.listdir(d))
    print(f"wrote {len(out)} tensors, {len(F)} images, fixtures total {total} bytes")
    for k, v in sorted(meta.items()):
        if k.startswith("pil."):
            print(f"  PIL on {k[4:]}: {v}")


if __name__ == "__main__":
    main()
