// weights.c - bind checkpoint tensors to model parameters (see weights.h).
//
// The file kind is decided by content: a zip archive is a torch.save file
// (read by torch_pt.c; its tensors are the dict pt_state_dict finds, with a
// "module." prefix stripped when every key has it, as open_clip's loader
// does), anything else is read as safetensors.  Problems are collected per
// category and reported together by ws_finish.
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "torch_pt.h"

typedef struct {
    const char     *name;
    StDtype         dtype;
    int             ndim;
    int64_t         shape[ST_MAXDIM];
    int64_t         numel;
    const StTensor *st;       // one of st / pt is set
    const PtTensor *pt;
    int             taken;
} WsEntry;

// A list of problem lines.
typedef struct {
    char **line;
    int    n, cap;
} Lines;

struct WeightSet {
    char     *path;
    StFile   *st;
    PtFile   *pt;
    WsEntry  *e;            // [n] in file order
    WsEntry **sorted;       // [n] by name
    int       n;
    Lines     missing, shape, convert, unexpected;
    Lines     ign_suffix, ign_prefix;
    char     *report;       // full report of the last ws_finish
};

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(mc_malloc(n), s, n);
}

static void lines_add(Lines *l, const char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->line = realloc(l->line, (size_t)l->cap * sizeof *l->line);
        MC_CHECK(l->line != NULL, "weights: out of memory");
    }
    l->line[l->n++] = xstrdup(s);
}

static void lines_free(Lines *l) {
    for (int i = 0; i < l->n; i++) mc_free(l->line[i]);
    free(l->line);
    memset(l, 0, sizeof *l);
}

// "[2, 3]" ("[]" for a scalar).
static char *shape_str(int ndim, const int64_t *shape, char *buf, size_t len) {
    size_t k = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < len) snprintf(buf + k, len - k, "]");
    return buf;
}

static int entry_cmp(const void *a, const void *b) {
    return strcmp((*(WsEntry *const *)a)->name, (*(WsEntry *const *)b)->name);
}

static WsEntry *find(const WeightSet *ws, const char *name) {
    int lo = 0, hi = ws->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, ws->sorted[mid]->name);
        if (!c) return ws->sorted[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

// ---- opening ----

static void from_safetensors(WeightSet *ws) {
    ws->n = st_count(ws->st);
    ws->e = mc_calloc((size_t)ws->n + 1, sizeof *ws->e);
    for (int i = 0; i < ws->n; i++) {
        const StTensor *t = st_at(ws->st, i);
        WsEntry *e = &ws->e[i];
        e->name = t->name, e->dtype = t->dtype, e->ndim = t->ndim, e->numel = t->numel;
        memcpy(e->shape, t->shape, sizeof e->shape);
        e->st = t;
    }
}

// The tensors of the state dict (other values, such as an epoch counter
// beside them, are skipped).
static int from_torch(WeightSet *ws, McErr *err) {
    const PtValue *sd = pt_state_dict(ws->pt);
    if (!sd)
        return mc_err(err, "%s: the saved object is a %s, expected a dict of tensors (a "
                      "state_dict)", ws->path, pt_kind_name(pt_root(ws->pt)->kind));
    ws->e = mc_calloc((size_t)sd->n + 1, sizeof *ws->e);
    int all_module = 1;
    for (int64_t i = 0; i < sd->n; i++) {
        const char *k = pt_key_str(sd, i);
        const PtTensor *t = pt_as_tensor(sd->items[i]);
        if (!k || !t) continue;
        WsEntry *e = &ws->e[ws->n++];
        e->name = k, e->dtype = t->dtype, e->ndim = t->ndim, e->numel = t->numel;
        memcpy(e->shape, t->shape, sizeof e->shape);
        e->pt = t;
        if (strncmp(k, "module.", 7)) all_module = 0;
    }
    if (ws->n == 0)
        return mc_err(err, "%s: the state dict holds no tensors", ws->path);

    // Checkpoints saved from DistributedDataParallel prefix every key.
    if (all_module)
        for (int i = 0; i < ws->n; i++) ws->e[i].name += 7;
    return 0;
}

WeightSet *ws_open(const char *path, McErr *err) {
    WeightSet *ws = mc_calloc(1, sizeof *ws);
    ws->path = xstrdup(path);

    // Zip (or a legacy pickle, which pt_open explains) -> torch; else
    // safetensors.  A safetensors header length can start with byte 0x80
    // (the pickle PROTO opcode), so its JSON opening brace at offset 8
    // decides first.
    unsigned char magic[9] = {0};
    FILE *fp = fopen(path, "rb");
    if (fp) {
        if (fread(magic, 1, sizeof magic, fp) != sizeof magic) magic[8] = 0;
        fclose(fp);
    }
    int looks_st = magic[8] == '{';
    int looks_pickle = magic[0] == 0x80 && magic[1] >= 2 && magic[1] <= 5;
    int rc;
    if (!looks_st && (pt_sniff(path) || looks_pickle)) {
        ws->pt = pt_open(path, err);
        rc = ws->pt ? from_torch(ws, err) : -1;
    } else {
        ws->st = st_open(path, err);
        if (ws->st) from_safetensors(ws);
        rc = ws->st ? 0 : -1;
    }
    if (rc) {
        ws_close(ws);
        return NULL;
    }

    // Name index; a torch dict can repeat a name only after "module." stripping.
    ws->sorted = mc_calloc((size_t)ws->n + 1, sizeof *ws->sorted);
    for (int i = 0; i < ws->n; i++) ws->sorted[i] = &ws->e[i];
    qsort(ws->sorted, (size_t)ws->n, sizeof *ws->sorted, entry_cmp);
    for (int i = 1; i < ws->n; i++)
        if (!strcmp(ws->sorted[i]->name, ws->sorted[i - 1]->name)) {
            mc_err(err, "%s: key %s appears twice", path, ws->sorted[i]->name);
            ws_close(ws);
            return NULL;
        }
    return ws;
}

void ws_close(WeightSet *ws) {
    if (!ws) return;
    st_close(ws->st);
    pt_close(ws->pt);
    mc_free(ws->e);
    mc_free(ws->sorted);
    lines_free(&ws->missing), lines_free(&ws->shape), lines_free(&ws->convert);
    lines_free(&ws->unexpected), lines_free(&ws->ign_suffix), lines_free(&ws->ign_prefix);
    free(ws->report);
    mc_free(ws->path);
    mc_free(ws);
}

const char *ws_path(const WeightSet *ws) { return ws->path; }

int ws_has(const WeightSet *ws, const char *name) { return find(ws, name) != NULL; }

int ws_shape(const WeightSet *ws, const char *name, int64_t *shape) {
    const WsEntry *e = find(ws, name);
    if (!e) return -1;
    memcpy(shape, e->shape, (size_t)e->ndim * sizeof *shape);
    return e->ndim;
}

// ---- taking ----

static Tensor *take(WeightSet *ws, const char *name, int ndim, const int64_t *shape, int opt) {
    WsEntry *e = find(ws, name);
    char want[160], got[160], line[512];
    if (!e) {
        if (opt) return NULL;
        lines_add(&ws->missing, name);
        return tensor_new(ndim, shape);
    }
    e->taken = 1;

    // Shapes must agree exactly (dims and sizes).
    int same = e->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = e->shape[i] == shape[i];
    if (!same) {
        snprintf(line, sizeof line, "%s expected %s found %s", name,
                 shape_str(ndim, shape, want, sizeof want),
                 shape_str(e->ndim, e->shape, got, sizeof got));
        lines_add(&ws->shape, line);
        return tensor_new(ndim, shape);
    }

    // Convert from the stored dtype.
    Tensor *t = tensor_new(ndim, shape);
    McErr cerr;
    int rc = e->st ? st_to_f32(ws->st, e->st, t->data, t->n, &cerr)
                   : pt_tensor_to_f32(ws->pt, e->pt, t->data, t->n, &cerr);
    if (rc) {
        lines_add(&ws->convert, cerr.msg);
        memset(t->data, 0, (size_t)t->n * sizeof(float));
    }
    return t;
}

Tensor *ws_take(WeightSet *ws, const char *name, int ndim, const int64_t *shape) {
    return take(ws, name, ndim, shape, 0);
}

Tensor *ws_take_opt(WeightSet *ws, const char *name, int ndim, const int64_t *shape) {
    return take(ws, name, ndim, shape, 1);
}

void ws_ignore_suffix(WeightSet *ws, const char *suffix) { lines_add(&ws->ign_suffix, suffix); }
void ws_ignore_prefix(WeightSet *ws, const char *prefix) { lines_add(&ws->ign_prefix, prefix); }

static int ignored(const WeightSet *ws, const char *name) {
    size_t n = strlen(name);
    for (int i = 0; i < ws->ign_suffix.n; i++) {
        size_t k = strlen(ws->ign_suffix.line[i]);
        if (k <= n && !strcmp(name + n - k, ws->ign_suffix.line[i])) return 1;
    }
    for (int i = 0; i < ws->ign_prefix.n; i++)
        if (!strncmp(name, ws->ign_prefix.line[i], strlen(ws->ign_prefix.line[i]))) return 1;
    return 0;
}

// ---- the report ----

typedef struct { char *s; size_t len, cap; } Buf;

static void buf_add(Buf *b, const char *s) {
    size_t n = strlen(s);
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        MC_CHECK(b->s != NULL, "weights: out of memory");
    }
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
}

// "\n  <title> (N): a, b, c" with at most budget bytes of names (all when
// budget is 0), then "... and K more".
static void add_category(Buf *b, const char *title, const Lines *l, const char *sep,
                         size_t budget) {
    if (!l->n) return;
    char head[96];
    snprintf(head, sizeof head, "\n  %s (%d): ", title, l->n);
    buf_add(b, head);
    size_t used = 0;
    for (int i = 0; i < l->n; i++) {
        size_t k = strlen(l->line[i]) + strlen(sep);
        if (budget && i && used + k > budget) {
            char more[64];
            snprintf(more, sizeof more, "%s... and %d more", sep, l->n - i);
            buf_add(b, more);
            return;
        }
        if (i) buf_add(b, sep);
        buf_add(b, l->line[i]);
        used += k;
    }
}

static void build_report(const WeightSet *ws, Buf *b, size_t budget) {
    char head[96];
    buf_add(b, ws->path);
    snprintf(head, sizeof head, ": checkpoint does not match the model: %d missing, %d "
             "mis-shaped, %d unexpected", ws->missing.n, ws->shape.n, ws->unexpected.n);
    buf_add(b, head);
    if (ws->convert.n) {
        snprintf(head, sizeof head, ", %d unreadable", ws->convert.n);
        buf_add(b, head);
    }
    add_category(b, "missing", &ws->missing, ", ", budget);
    add_category(b, "mis-shaped", &ws->shape, "; ", budget);
    add_category(b, "unexpected", &ws->unexpected, ", ", budget);
    add_category(b, "unreadable", &ws->convert, "; ", budget);
}

int ws_finish(WeightSet *ws, McErr *err) {
    // Keys nobody took (and not ignored) are unexpected.
    lines_free(&ws->unexpected);
    for (int i = 0; i < ws->n; i++)
        if (!ws->e[i].taken && !ignored(ws, ws->e[i].name))
            lines_add(&ws->unexpected, ws->e[i].name);
    free(ws->report);
    ws->report = NULL;
    if (!ws->missing.n && !ws->shape.n && !ws->unexpected.n && !ws->convert.n) return 0;

    // The full list for ws_report; a shortened one (each category gets a
    // share of the message) for err.
    Buf full = {0}, brief = {0};
    build_report(ws, &full, 0);
    ws->report = full.s;
    build_report(ws, &brief, (MC_ERRLEN - 300) / 4);
    mc_err(err, "%s", brief.s);
    free(brief.s);
    return -1;
}

const char *ws_report(const WeightSet *ws) { return ws->report ? ws->report : ""; }
