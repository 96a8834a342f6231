// gen_dataset.c - procedural images written in every dataset layout (see
// gen_dataset.h for what is drawn and where it goes).
//
// Randomness: splitmix64 streams keyed by (seed, class, image), so one
// image never depends on how many others were drawn before it.
#include "gen_dataset.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image_write.h>

#include "../mobileclip/json.h"
#include "dataset.h"
#include "matfile.h"

// ---- random numbers ----

static uint64_t sm64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unif(uint64_t *s) { return (double)(sm64(s) >> 11) * (1.0 / 9007199254740992.0); }

// A stream for (seed, stream kind, class, image).
static uint64_t stream(const GenOptions *o, int kind, int c, int i) {
    uint64_t s = o->seed ^ ((uint64_t)kind << 56) ^ ((uint64_t)(c + 1) << 32) ^ (uint64_t)i;
    sm64(&s);
    return s;
}

// ---- drawing ----

static const char *SHAPES[8] = {"circle", "square", "triangle", "ring",
                                "cross",  "diamond", "stripes", "checker"};
static const char *SHAPE_WORDS[8] = {"circle", "square", "triangle", "ring",
                                     "cross", "diamond", "striped square", "checkered square"};
static const char *COLOURS[8] = {"red", "green", "blue", "yellow",
                                 "magenta", "cyan", "orange", "purple"};
static const uint8_t RGB[8][3] = {{220, 40, 40},  {40, 180, 60},  {40, 70, 220},  {230, 210, 40},
                                  {210, 50, 200}, {40, 200, 210}, {240, 140, 30}, {120, 50, 160}};

GenOptions gen_defaults(void) {
    GenOptions g = {.classes = 5, .per_class = 12, .size = 64, .seed = 1, .jpeg_quality = 90};
    return g;
}

// Shape c % 8 and colour (c + c / 8) % 8: the pairs are distinct for
// c < 64, and neighbouring classes differ in both.
static int colour_of(int c) { return (c + c / 8) % 8; }

const char *gen_class_name(int c, char *buf, size_t len) {
    int round = c / 64;
    if (round) snprintf(buf, len, "%s_%s_%d", COLOURS[colour_of(c)], SHAPES[c % 8], round + 1);
    else snprintf(buf, len, "%s_%s", COLOURS[colour_of(c)], SHAPES[c % 8]);
    return buf;
}

// Is (dx, dy) (pixels from the centre) inside shape k of radius r?
static int inside(int k, double dx, double dy, double r) {
    double ax = fabs(dx), ay = fabs(dy);
    switch (k) {
    case 0: return dx * dx + dy * dy < r * r;
    case 1: return ax < 0.85 * r && ay < 0.85 * r;
    case 2: return dy > -r && dy < 0.8 * r && ax < (dy + r) * 0.6;
    case 3: {
        double e = dx * dx + dy * dy;
        return e < r * r && e > 0.36 * r * r;
    }
    case 4: return (ax < 0.3 * r && ay < r) || (ay < 0.3 * r && ax < r);
    case 5: return ax + ay < r;
    case 6: return ax < r && ay < r && ((int)floor((dy + r) / (r / 3)) % 2 == 0);
    default:
        return ax < r && ay < r &&
               (((int)floor((dx + r) / (r / 2)) + (int)floor((dy + r) / (r / 2))) % 2 == 0);
    }
}

void gen_draw(const GenOptions *o, int c, int idx, int w, int h, uint8_t *rgb) {
    uint64_t s = stream(o, 1, c, idx);

    // Per-image jitter: centre, radius, colour, background level.
    int k = c % 8;
    const uint8_t *base = RGB[colour_of(c)];
    double m = w < h ? w : h;
    double cx = w / 2.0 + (unif(&s) - 0.5) * m / 4, cy = h / 2.0 + (unif(&s) - 0.5) * m / 4;
    double r = (0.25 + 0.12 * unif(&s)) * m;
    double col[3], bg = 80 + 70 * unif(&s);
    for (int ch = 0; ch < 3; ch++) col[ch] = base[ch] + (unif(&s) - 0.5) * 40;

    // Pixels: shape colour or grey, plus uniform noise of +-20.
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            int in = inside(k, x + 0.5 - cx, y + 0.5 - cy, r);
            for (int ch = 0; ch < 3; ch++) {
                double v = (in ? col[ch] : bg) + (unif(&s) - 0.5) * 40;
                rgb[((size_t)y * w + x) * 3 + ch] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
}

// ---- files ----

typedef struct {
    char  *p;
    size_t len, cap;
    int    failed;
} Buf;

static void buf_add(Buf *b, const void *src, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 4096;
        while (nc < b->len + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void buf_cat(Buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(Buf *b, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    MC_CHECK(n >= 0 && n < (int)sizeof tmp, "gen: formatted line too long");
    buf_add(b, tmp, (size_t)n);
}

// A JSON string literal.
static void buf_quoted(Buf *b, const char *s) {
    char tmp[1024];
    size_t n = json_quote(tmp, sizeof tmp, s);
    MC_CHECK(n < sizeof tmp, "gen: string too long");
    buf_add(b, tmp, n);
}

static void stbi_cb(void *ctx, void *data, int size) { buf_add(ctx, data, (size_t)size); }

int gen_write_image(const char *path, int w, int h, int comp, const uint8_t *px, int jpeg,
                    int quality, McErr *err) {
    Buf b = {0};
    int ok = jpeg ? stbi_write_jpg_to_func(stbi_cb, &b, w, h, comp, px, quality)
                  : stbi_write_png_to_func(stbi_cb, &b, w, h, comp, px, w * comp);
    int rc = ok && !b.failed ? ds_write_file(path, b.p, b.len, err)
                             : mc_err(err, "%s: image encoding failed", path);
    free(b.p);
    return rc;
}

static int write_buf(const char *path, Buf *b, McErr *err) {
    if (b->failed) return mc_err(err, "%s: out of memory", path);
    int rc = ds_write_file(path, b->p ? b->p : "", b->len, err);
    free(b->p);
    memset(b, 0, sizeof *b);
    return rc;
}

// ---- one image in one encoding ----

typedef enum { V_JPG, V_PNG, V_PNG_RGBA, V_JPG_GRAY } Variant;

// Draw (c, i) at its size (nominal +-1) and write it in variant v.
static int write_sample(const GenOptions *o, int c, int i, Variant v, const char *path,
                        McErr *err) {
    int w = o->size + (i * 7 + c) % 3 - 1, h = o->size + (i * 5 + c * 3) % 3 - 1;
    uint8_t *rgb = mc_malloc((size_t)w * h * 4);
    gen_draw(o, c, i, w, h, rgb);
    int comp = 3;
    if (v == V_PNG_RGBA) {
        // Expand to RGBA with a varying alpha (decoders must drop it).
        for (int p = w * h - 1; p >= 0; p--) {
            rgb[p * 4 + 3] = (uint8_t)(128 + (p % 128));
            for (int ch = 2; ch >= 0; ch--) rgb[p * 4 + ch] = rgb[p * 3 + ch];
        }
        comp = 4;
    } else if (v == V_JPG_GRAY) {
        for (int p = 0; p < w * h; p++)
            rgb[p] = (uint8_t)((rgb[p * 3] * 299 + rgb[p * 3 + 1] * 587 + rgb[p * 3 + 2] * 114) /
                               1000);
        comp = 1;
    }
    int rc = gen_write_image(path, w, h, comp, rgb, v == V_JPG || v == V_JPG_GRAY,
                             o->jpeg_quality, err);
    mc_free(rgb);
    return rc;
}

static int split_of(int i, int M) {
    return i < M / 2 ? DS_TRAIN : i < M / 2 + M / 5 ? DS_VAL : DS_TEST;
}

// Spaces instead of underscores, for display names and captions.
static void spaced(const char *s, char *out, size_t len) {
    snprintf(out, len, "%s", s);
    for (char *p = out; *p; p++)
        if (*p == '_') *p = ' ';
}

// Format a path into buf[DS_PATH_MAX]; gen_dataset() bounds the output
// folder's length, so generated paths always fit.
static char *fmt_path(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *fmt_path(char *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, DS_PATH_MAX, fmt, ap);
    va_end(ap);
    MC_CHECK(n >= 0 && n < DS_PATH_MAX, "gen: path too long");
    return buf;
}

static char *path2(char *buf, const char *a, const char *b) {
    return fmt_path(buf, "%s/%s", a, b);
}

// ---- layouts ----

static int gen_imagefolder(const char *out, const GenOptions *o, McErr *err) {
    char dir[DS_PATH_MAX], path[DS_PATH_MAX], name[64], file[64];
    for (int c = 0; c < o->classes; c++) {
        fmt_path(dir, "%s/imagefolder/%s", out, gen_class_name(c, name, sizeof name));
        if (ds_mkdirs(dir, err)) return -1;
        for (int i = 0; i < o->per_class; i++) {
            // PNG and JPEG alternate; every fourth image an RGBA PNG.
            Variant v = i % 2 ? V_JPG : i % 4 == 2 ? V_PNG_RGBA : V_PNG;
            snprintf(file, sizeof file, "img_%03d.%s", i, v == V_JPG ? "jpg" : "png");
            if (write_sample(o, c, i, v, path2(path, dir, file), err)) return -1;
        }
    }
    return 0;
}

static int gen_tsv(const char *out, const GenOptions *o, McErr *err) {
    char dir[DS_PATH_MAX], path[DS_PATH_MAX], name[64], file[96], words[64];
    Buf man = {0}, names = {0}, caps = {0};
    fmt_path(dir, "%s/tsv/images", out);
    if (ds_mkdirs(dir, err)) return -1;
    buf_printf(&man, "# generated by mclip data gen (seed %llu)\npath\tlabel\tsplit\n",
               (unsigned long long)o->seed);
    buf_printf(&caps, "path\tcaption\n");
    for (int c = 0; c < o->classes; c++) {
        gen_class_name(c, name, sizeof name);
        buf_printf(&names, "%s\n", name);
        spaced(name, words, sizeof words);
        for (int i = 0; i < o->per_class; i++) {
            Variant v = i % 3 ? V_JPG : V_PNG;
            snprintf(file, sizeof file, "%s_%03d.%s", name, i, v == V_JPG ? "jpg" : "png");
            if (write_sample(o, c, i, v, path2(path, dir, file), err)) goto fail;
            buf_printf(&man, "images/%s\t%d\t%s\n", file, c,
                       ds_split_name(split_of(i, o->per_class)));
            buf_printf(&caps, "images/%s\ta picture of a %s.\n", file, words);
            buf_printf(&caps, "images/%s\ta %s on a grey background.\n", file, words);
        }
    }
    snprintf(path, sizeof path, "%s/tsv/manifest.tsv", out);
    if (write_buf(path, &man, err)) goto fail;
    snprintf(path, sizeof path, "%s/tsv/classnames.txt", out);
    if (write_buf(path, &names, err)) goto fail;
    snprintf(path, sizeof path, "%s/tsv/captions.tsv", out);
    if (write_buf(path, &caps, err)) goto fail;
    return 0;
fail:
    free(man.p);
    free(names.p);
    free(caps.p);
    return -1;
}

// Flowers-style image ids: a shuffled numbering of all images, so labels
// interleave and trnid is not sorted.  id[c * M + i] in 1..C*M.
static int *flower_ids(const GenOptions *o) {
    int n = o->classes * o->per_class;
    int *id = mc_malloc((size_t)n * sizeof *id);
    for (int k = 0; k < n; k++) id[k] = k + 1;
    uint64_t s = stream(o, 2, 0, 0);
    for (int k = n - 1; k > 0; k--) {
        int j = (int)(sm64(&s) % (uint64_t)(k + 1)), t = id[k];
        id[k] = id[j];
        id[j] = t;
    }
    return id;
}

// jpg/image_NNNNN.jpg and imagelabels.mat under dir.
static int gen_flower_images(const char *dir, const GenOptions *o, const int *id, McErr *err) {
    char jpg[DS_PATH_MAX], path[DS_PATH_MAX], file[64];
    int n = o->classes * o->per_class;
    fmt_path(jpg, "%s/jpg", dir);
    if (ds_mkdirs(jpg, err)) return -1;
    double *labels = mc_malloc((size_t)n * sizeof *labels);
    for (int c = 0; c < o->classes; c++)
        for (int i = 0; i < o->per_class; i++) {
            int k = id[c * o->per_class + i];
            labels[k - 1] = c + 1;
            snprintf(file, sizeof file, "image_%05d.jpg", k);
            if (write_sample(o, c, i, V_JPG, path2(path, jpg, file), err)) {
                mc_free(labels);
                return -1;
            }
        }
    // labels 1 x n, declared double, stored as miUINT8, compressed.
    MatWriteVar v = {.name = "labels", .rows = 1, .cols = n, .values = labels,
                     .stype = MAT_UINT8, .compress = 1};
    int rc = mat_write(path2(path, dir, "imagelabels.mat"), &v, 1, 0, err);
    mc_free(labels);
    return rc;
}

static int gen_flowers_native(const char *out, const GenOptions *o, const int *id, McErr *err) {
    char dir[DS_PATH_MAX], path[DS_PATH_MAX];
    fmt_path(dir, "%s/flowers102", out);
    if (gen_flower_images(dir, o, id, err)) return -1;

    // setid.mat: trnid, valid, tstid as miUINT16 like the genuine file.
    int n = o->classes * o->per_class, cnt[4] = {0};
    double *ids[4];
    for (int s = 1; s <= 3; s++) ids[s] = mc_malloc((size_t)n * sizeof(double));
    for (int c = 0; c < o->classes; c++)
        for (int i = 0; i < o->per_class; i++) {
            int s = split_of(i, o->per_class);
            ids[s][cnt[s]++] = id[c * o->per_class + i];
        }
    MatWriteVar v[3] = {
        {.name = "trnid", .rows = 1, .cols = cnt[1], .values = ids[1], .stype = MAT_UINT16,
         .compress = 1},
        {.name = "valid", .rows = 1, .cols = cnt[2], .values = ids[2], .stype = MAT_UINT16,
         .compress = 1},
        {.name = "tstid", .rows = 1, .cols = cnt[3], .values = ids[3], .stype = MAT_UINT16,
         .compress = 1},
    };
    int rc = mat_write(path2(path, dir, "setid.mat"), v, 3, 0, err);
    for (int s = 1; s <= 3; s++) mc_free(ids[s]);
    return rc;
}

static int gen_coop(const char *out, const GenOptions *o, const int *id, McErr *err) {
    char dir[DS_PATH_MAX], path[DS_PATH_MAX], name[64], words[64], file[64];
    fmt_path(dir, "%s/coop/oxford_flowers", out);
    if (gen_flower_images(dir, o, id, err)) return -1;

    // cat_to_name.json: {"1": "red circle", ...}.
    Buf cat = {0}, js = {0};
    buf_cat(&cat, "{");
    for (int c = 0; c < o->classes; c++) {
        spaced(gen_class_name(c, name, sizeof name), words, sizeof words);
        buf_printf(&cat, "%s\"%d\": ", c ? ", " : "", c + 1);
        buf_quoted(&cat, words);
    }
    buf_cat(&cat, "}\n");
    if (write_buf(path2(path, dir, "cat_to_name.json"), &cat, err)) return -1;

    // split_zhou_OxfordFlowers.json, 4-space indent as Dassl writes it.
    static const char *keys[3] = {"train", "val", "test"};
    buf_cat(&js, "{\n");
    for (int s = 1; s <= 3; s++) {
        buf_printf(&js, "    \"%s\": [", keys[s - 1]);
        int first = 1;
        for (int c = 0; c < o->classes; c++) {
            spaced(gen_class_name(c, name, sizeof name), words, sizeof words);
            for (int i = 0; i < o->per_class; i++) {
                if (split_of(i, o->per_class) != s) continue;
                snprintf(file, sizeof file, "image_%05d.jpg", id[c * o->per_class + i]);
                buf_printf(&js, "%s\n        [\n            \"%s\",\n            %d,\n"
                           "            ", first ? "" : ",", file, c);
                buf_quoted(&js, words);
                buf_cat(&js, "\n        ]");
                first = 0;
            }
        }
        buf_printf(&js, "\n    ]%s\n", s < 3 ? "," : "");
    }
    buf_cat(&js, "}");
    return write_buf(path2(path, dir, "split_zhou_OxfordFlowers.json"), &js, err);
}

static int gen_dtd(const char *out, const GenOptions *o, McErr *err) {
    char root[DS_PATH_MAX], dir[DS_PATH_MAX], path[DS_PATH_MAX], name[64], file[128];
    static const char *parts[3] = {"train", "val", "test"};
    Buf lists[2][3];
    memset(lists, 0, sizeof lists);
    fmt_path(root, "%s/dtd/dtd", out);
    fmt_path(dir, "%s/labels", root);
    if (ds_mkdirs(dir, err)) return -1;
    int rc = 0;
    for (int c = 0; c < o->classes && !rc; c++) {
        gen_class_name(c, name, sizeof name);
        fmt_path(dir, "%s/images/%s", root, name);
        if ((rc = ds_mkdirs(dir, err))) break;
        for (int i = 0; i < o->per_class && !rc; i++) {
            snprintf(file, sizeof file, "%s_%04d.jpg", name, i + 1);
            rc = write_sample(o, c, i, V_JPG, path2(path, dir, file), err);
            // Partition 1 by index, partition 2 rotated by half a class.
            int s1 = split_of(i, o->per_class);
            int s2 = split_of((i + o->per_class / 2) % o->per_class, o->per_class);
            buf_printf(&lists[0][s1 - 1], "%s/%s\n", name, file);
            buf_printf(&lists[1][s2 - 1], "%s/%s\n", name, file);
        }
    }
    for (int p = 0; p < 2; p++)
        for (int s = 0; s < 3; s++) {
            snprintf(file, sizeof file, "labels/%s%d.txt", parts[s], p + 1);
            if (!rc) rc = write_buf(path2(path, root, file), &lists[p][s], err);
            free(lists[p][s].p);
        }
    return rc;
}

// Caltech folder of generated class c: four real names first (they carry
// CoOp's renames), then generated names.
static const char *caltech_folder(int c, char *buf, size_t len) {
    static const char *real[4] = {"Faces", "Leopards", "Motorbikes", "airplanes"};
    if (c < 4) snprintf(buf, len, "%s", real[c]);
    else gen_class_name(c, buf, len);
    return buf;
}

static int gen_caltech(const char *out, const GenOptions *o, McErr *err) {
    char root[DS_PATH_MAX], dir[DS_PATH_MAX], path[DS_PATH_MAX], name[64], file[64];
    fmt_path(root, "%s/caltech101/caltech-101/101_ObjectCategories", out);

    // The classes, plus BACKGROUND_Google (noise: drawn as class C) and
    // Faces_easy (more of class 0), both dropped by CoOp.
    for (int c = -2; c < o->classes; c++) {
        const char *folder = c == -2   ? "BACKGROUND_Google"
                             : c == -1 ? "Faces_easy"
                                       : caltech_folder(c, name, sizeof name);
        int draw = c == -2 ? o->classes : c == -1 ? 0 : c;
        fmt_path(dir, "%s/%s", root, folder);
        if (ds_mkdirs(dir, err)) return -1;
        for (int i = 0; i < o->per_class; i++) {
            snprintf(file, sizeof file, "image_%04d.jpg", i + 1);
            Variant v = i % 7 == 3 ? V_JPG_GRAY : V_JPG;
            if (write_sample(o, draw, i + (c == -1 ? 1000 : 0), v, path2(path, dir, file), err))
                return -1;
        }
    }
    return 0;
}

// SUN397 class path of generated class c: "/r/red_circle", every third
// with a sub-folder ("/b/blue_triangle/outdoor").
static void sun_path(int c, char *buf, size_t len) {
    char name[64];
    gen_class_name(c, name, sizeof name);
    if (c % 3 == 2) snprintf(buf, len, "/%c/%s/outdoor", name[0], name);
    else snprintf(buf, len, "/%c/%s", name[0], name);
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int gen_sun(const char *out, const GenOptions *o, McErr *err) {
    char root[DS_PATH_MAX], dir[DS_PATH_MAX], path[DS_PATH_MAX], cls[128], file[64];
    Buf names = {0}, train = {0}, test = {0};
    fmt_path(root, "%s/sun397", out);

    // ClassName.txt sorted like the real file.
    char **paths = mc_malloc((size_t)o->classes * sizeof *paths);
    for (int c = 0; c < o->classes; c++) {
        paths[c] = mc_malloc(128);
        sun_path(c, paths[c], 128);
    }
    qsort(paths, (size_t)o->classes, sizeof *paths, cmp_cstr);
    for (int c = 0; c < o->classes; c++) {
        buf_printf(&names, "%s\n", paths[c]);
        mc_free(paths[c]);
    }
    mc_free(paths);

    // Images; Training_01 = first half of each class, Testing_01 the rest.
    int rc = 0;
    for (int c = 0; c < o->classes && !rc; c++) {
        sun_path(c, cls, sizeof cls);
        fmt_path(dir, "%s/SUN397%s", root, cls);
        if ((rc = ds_mkdirs(dir, err))) break;
        uint64_t s = stream(o, 3, c, 0);
        for (int i = 0; i < o->per_class && !rc; i++) {
            char letters[17];
            for (int k = 0; k < 16; k++) letters[k] = (char)('a' + sm64(&s) % 26);
            letters[16] = 0;
            snprintf(file, sizeof file, "sun_%s.jpg", letters);
            // One PNG named .jpg (SUN397 has such files).
            Variant v = c == 0 && i == 0 ? V_PNG : V_JPG;
            rc = write_sample(o, c, i, v, path2(path, dir, file), err);
            buf_printf(i < o->per_class / 2 ? &train : &test, "%s/%s\n", cls, file);
        }
    }
    if (!rc) rc = write_buf(path2(path, root, "ClassName.txt"), &names, err);
    if (!rc) rc = write_buf(path2(path, root, "Training_01.txt"), &train, err);
    if (!rc) rc = write_buf(path2(path, root, "Testing_01.txt"), &test, err);
    free(names.p);
    free(train.p);
    free(test.p);
    return rc;
}

// Five captions for generated class c (Flickr30k has five per image).
static void captions_of(int c, char caps[5][160]) {
    const char *col = COLOURS[colour_of(c)], *shape = SHAPE_WORDS[c % 8];
    snprintf(caps[0], 160, "A %s %s on a grey background.", col, shape);
    snprintf(caps[1], 160, "A picture of a %s %s.", col, shape);
    snprintf(caps[2], 160, "The %s in this image is %s.", shape, col);
    snprintf(caps[3], 160, "Someone drew a %s %s with some noise around it.", col, shape);
    snprintf(caps[4], 160, "A noisy photo showing one %s %s.", col, shape);
}

// Lowercase words of a caption, as Karpathy's "tokens".
static void tokens_json(Buf *b, const char *s) {
    char word[64];
    int n = 0, first = 1;
    buf_add(b, "[", 1);
    for (const char *p = s;; p++) {
        char ch = *p;
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9');
        if (alnum && n < 63) {
            word[n++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        } else if (n) {
            word[n] = 0;
            buf_printf(b, "%s\"%s\"", first ? "" : ", ", word);
            first = 0;
            n = 0;
        }
        if (!ch) break;
    }
    buf_add(b, "]", 1);
}

static int gen_flickr(const char *out, const GenOptions *o, McErr *err) {
    char root[DS_PATH_MAX], dir[DS_PATH_MAX], path[DS_PATH_MAX], file[64], caps[5][160];
    Buf js = {0}, tok = {0};
    fmt_path(root, "%s/flickr30k", out);
    fmt_path(dir, "%s/flickr30k-images", root);
    if (ds_mkdirs(dir, err)) return -1;
    buf_cat(&js, "{\"images\": [");
    int img = 0, sent = 0, rc = 0;
    for (int c = 0; c < o->classes && !rc; c++) {
        captions_of(c, caps);
        for (int i = 0; i < o->per_class && !rc; i++, img++) {
            snprintf(file, sizeof file, "%d.jpg", 1000000 + img * 37);
            rc = write_sample(o, c, i, V_JPG, path2(path, dir, file), err);

            // Karpathy entry: filename, imgid, sentids, split, sentences.
            buf_printf(&js, "%s{\"filename\": \"%s\", \"imgid\": %d, \"sentids\": [%d, %d, %d, "
                       "%d, %d], \"split\": \"%s\", \"sentences\": [", img ? ", " : "", file, img,
                       sent, sent + 1, sent + 2, sent + 3, sent + 4,
                       ds_split_name(split_of(i, o->per_class)));
            for (int k = 0; k < 5; k++, sent++) {
                buf_printf(&js, "%s{\"tokens\": ", k ? ", " : "");
                tokens_json(&js, caps[k]);
                buf_cat(&js, ", \"raw\": ");
                buf_quoted(&js, caps[k]);
                buf_printf(&js, ", \"imgid\": %d, \"sentid\": %d}", img, sent);
                buf_printf(&tok, "%s#%d\t%s\n", file, k, caps[k]);
            }
            buf_cat(&js, "]}");
        }
    }
    buf_cat(&js, "], \"dataset\": \"flickr30k\"}");
    if (!rc) rc = write_buf(path2(path, root, "dataset_flickr30k.json"), &js, err);
    if (!rc) rc = write_buf(path2(path, root, "results_20130124.token"), &tok, err);
    free(js.p);
    free(tok.p);
    return rc;
}

int gen_dataset(const char *out_dir, const GenOptions *o, McErr *err) {
    if (o->classes < 2 || o->classes > GEN_MAX_CLASSES)
        return mc_err(err, "gen: --classes %d: expected 2..%d", o->classes, GEN_MAX_CLASSES);
    if (o->per_class < 5 || o->per_class > 1000)
        return mc_err(err, "gen: --per-class %d: expected 5..1000", o->per_class);
    if (o->size < 8 || o->size > 1024)
        return mc_err(err, "gen: --size %d: expected 8..1024", o->size);
    if (o->jpeg_quality < 1 || o->jpeg_quality > 100)
        return mc_err(err, "gen: JPEG quality %d: expected 1..100", o->jpeg_quality);
    if (strlen(out_dir) > DS_PATH_MAX / 2)
        return mc_err(err, "gen: output folder path longer than %d bytes", DS_PATH_MAX / 2);
    if (ds_mkdirs(out_dir, err)) return -1;
    int *id = flower_ids(o);
    int rc = gen_imagefolder(out_dir, o, err);
    if (!rc) rc = gen_tsv(out_dir, o, err);
    if (!rc) rc = gen_coop(out_dir, o, id, err);
    if (!rc) rc = gen_flowers_native(out_dir, o, id, err);
    if (!rc) rc = gen_dtd(out_dir, o, err);
    if (!rc) rc = gen_caltech(out_dir, o, err);
    if (!rc) rc = gen_sun(out_dir, o, err);
    if (!rc) rc = gen_flickr(out_dir, o, err);
    mc_free(id);
    return rc;
}
