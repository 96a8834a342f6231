// train.c - the CoOp training loop, evaluation, checkpoints (see train.h).
//
// Dims: K classes, E embedding width, B batch, n images of a split.
#include "train.h"

#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../datasets/dataset.h"
#include "../mobileclip/safetensors.h"
#include "rng.h"

#define CKPT_FORMAT "mclip-coop-ckpt-2"
// Metadata key of the whole-file SHA-256 (computed with its own 64 hex
// digits set to '0'); any changed, missing or extra byte breaks it.
#define CKPT_FILE_SUM "file_sha256"

CoopTrainCfg coop_train_defaults(void) {
    CoopTrainCfg c = {.opt = coop_opt_paper(), .epochs = 10, .batch = 16, .shuffle = 0,
                      .seed = 1, .scale = COOP_PAPER_SCALE, .eval_every = 100,
                      .chunk = COOP_DEFAULT_CHUNK, .ckpt_every = 50};
    return c;
}

// ---- evaluation ----

// Accuracy of s against normalised class features tn [K, E]; pred, logits
// and loss optional (see coop_evaluate).
static double eval_split(const float *tn, int64_t K, int64_t E, const CoopTrainSet *s,
                         double scale, int *pred, float *logits, double *loss) {
    int64_t correct = 0;
    double ce = 0;
    double *z = mc_malloc((size_t)K * sizeof *z);
    for (int64_t i = 0; i < s->n; i++) {
        const float *f_i = s->feat + i * E;
        // z[k] = scale * f_i . t_k; prediction = first maximum
        int64_t best = 0;
        double mx = -INFINITY;
        for (int64_t k = 0; k < K; k++) {
            double d = 0;
            for (int64_t j = 0; j < E; j++) d += (double)f_i[j] * tn[k * E + j];
            z[k] = scale * d;
            if (logits) logits[i * K + k] = (float)z[k];
            if (z[k] > mx) mx = z[k], best = k;
        }
        double sum = 0;
        for (int64_t k = 0; k < K; k++) sum += exp(z[k] - mx);
        ce += -(z[s->labels[i]] - mx - log(sum));
        correct += best == s->labels[i];
        if (pred) pred[i] = (int)best;
    }
    mc_free(z);
    if (loss) *loss = s->n ? ce / (double)s->n : 0;
    return s->n ? (double)correct / (double)s->n : 0;
}

// Normalised class features tn [K, E] (mc_malloc'd) of the current prompt.
static float *class_features(CoopEngine *e, CoopPrompt *p, const CoopSeqs *cls) {
    int64_t E = e->tt->cfg.embed;
    float *tn = mc_malloc((size_t)(cls->R * E) * sizeof *tn);
    coop_text_features(e, p, cls, tn);
    coop_normalize_rows(tn, cls->R, E);
    return tn;
}

double coop_evaluate(CoopEngine *e, CoopPrompt *p, const CoopSeqs *cls, const CoopTrainSet *s,
                     double scale, int *pred, float *logits, double *loss) {
    float *tn = class_features(e, p, cls);
    double acc = eval_split(tn, cls->R, e->tt->cfg.embed, s, scale, pred, logits, loss);
    mc_free(tn);
    return acc;
}

// ---- training state ----

typedef struct {
    CoopOptim opt;
    CoopRng   rng;
    int64_t   step, total, spe;
    int64_t  *order;        // [n_train] current epoch's order
    float    *best_ctx;     // [ctx->n]
    double    best_acc;
    int64_t   best_step;
    float    *loss;         // [total]
    int       n_evals, cap_evals;
    int64_t  *eval_step;
    double   *eval_train, *eval_val;
    int       ckpt_ok;      // 1: the file at ckpt_path is known to be a good checkpoint
} State;

static void state_free(State *s) {
    coop_optim_free(&s->opt);
    mc_free(s->order), mc_free(s->best_ctx), mc_free(s->loss);
    mc_free(s->eval_step), mc_free(s->eval_train), mc_free(s->eval_val);
}

static void add_eval(State *s, int64_t step, double tr, double va) {
    if (s->n_evals == s->cap_evals) {
        int cap = s->cap_evals ? 2 * s->cap_evals : 16;
        int64_t *a = mc_malloc((size_t)cap * sizeof *a);
        double *b = mc_malloc((size_t)cap * sizeof *b), *c = mc_malloc((size_t)cap * sizeof *c);
        if (s->n_evals) {
            memcpy(a, s->eval_step, (size_t)s->n_evals * sizeof *a);
            memcpy(b, s->eval_train, (size_t)s->n_evals * sizeof *b);
            memcpy(c, s->eval_val, (size_t)s->n_evals * sizeof *c);
        }
        mc_free(s->eval_step), mc_free(s->eval_train), mc_free(s->eval_val);
        s->eval_step = a, s->eval_train = b, s->eval_val = c, s->cap_evals = cap;
    }
    s->eval_step[s->n_evals] = step;
    s->eval_train[s->n_evals] = tr;
    s->eval_val[s->n_evals] = va;
    s->n_evals++;
}

// Everything a checkpoint must agree on, as text (also hashed into it).
static void fingerprint(char *buf, size_t len, const CoopTrainCfg *c, const CoopPrompt *p,
                        const CoopSeqs *cls, const CoopTrainSet *tr, const CoopTrainSet *va,
                        int64_t E) {
    char fh[65], ih[65];
    ds_sha256_hex(tr->feat, (size_t)(tr->n * E) * sizeof(float), fh);
    ds_sha256_hex(cls->ids, (size_t)(cls->R * cls->T) * sizeof(int32_t), ih);
    snprintf(buf, len,
             "K %lld n_train %lld n_val %lld E %lld batch %d epochs %d max_steps %lld "
             "shuffle %d seed %llu scale %.17g opt %s lr %.17g wd %.17g b1 %.17g b2 %.17g "
             "eps %.17g mom %.17g sched %s warmup %d %.17g eval_every %d M %d W %d csc %d "
             "form %s pool %s pos %s train_features %s class_ids %s",
             (long long)cls->R, (long long)tr->n, (long long)(va ? va->n : 0), (long long)E,
             c->batch, c->epochs, (long long)c->max_steps, c->shuffle,
             (unsigned long long)c->seed, c->scale, coop_opt_name(c->opt.kind), c->opt.lr,
             c->opt.weight_decay, c->opt.beta1, c->opt.beta2, c->opt.eps, c->opt.momentum,
             coop_sched_name(c->opt.sched), c->opt.warmup_epochs, c->opt.warmup_lr,
             c->eval_every, p->cfg.n_ctx, p->width, p->cfg.csc, coop_form_name(p->cfg.form),
             coop_pool_name(p->cfg.pool), coop_pos_name(p->cfg.pos), fh, ih);
}

// ---- checkpoints ----

typedef struct { unsigned char *b; size_t len, cap; } Bytes;

static void bytes_add(Bytes *x, const void *p, size_t n) {
    if (x->len + n > x->cap) {
        size_t cap = (x->len + n) * 2 + 1024;
        unsigned char *nb = mc_malloc(cap);
        if (x->b) memcpy(nb, x->b, x->len);
        mc_free(x->b);
        x->b = nb, x->cap = cap;
    }
    memcpy(x->b + x->len, p, n);
    x->len += n;
}

// The checkpoint's content in a fixed order: the checksum input.
static void ckpt_bytes(Bytes *x, const char *fp, const CoopPrompt *p, const State *s,
                       const int64_t *st, int64_t n_train) {
    bytes_add(x, fp, strlen(fp));
    bytes_add(x, p->ctx->data, (size_t)p->ctx->n * sizeof(float));
    bytes_add(x, s->opt.m, (size_t)s->opt.n * sizeof(float));
    if (s->opt.v) bytes_add(x, s->opt.v, (size_t)s->opt.n * sizeof(float));
    bytes_add(x, s->best_ctx, (size_t)p->ctx->n * sizeof(float));
    bytes_add(x, s->order, (size_t)n_train * sizeof(int64_t));
    bytes_add(x, st, 9 * sizeof(int64_t));
    bytes_add(x, s->loss, (size_t)s->step * sizeof(float));
    bytes_add(x, s->eval_step, (size_t)s->n_evals * sizeof(int64_t));
    bytes_add(x, s->eval_train, (size_t)s->n_evals * sizeof(double));
    bytes_add(x, s->eval_val, (size_t)s->n_evals * sizeof(double));
}

static void pack_state(const State *s, int64_t st[9]) {
    st[0] = s->step;
    st[1] = s->opt.step;
    for (int i = 0; i < 4; i++) memcpy(&st[2 + i], &s->rng.s[i], sizeof(int64_t));
    st[6] = s->best_step;
    memcpy(&st[7], &s->best_acc, sizeof(int64_t));   // the double's bits
    st[8] = s->n_evals;
}

// ---- checkpoint files ----
//
// Saving FILE: the new checkpoint is written as FILE.new (itself written to
// a temp file, fsynced and renamed by st_writer_save), its whole-file
// checksum patched in and fsynced; then FILE (when it is a known good
// checkpoint) becomes FILE.prev (old FILE.prev removed, FILE hard-linked as
// FILE.prev; a rename where links fail), the folder fsynced, FILE.new
// renamed over FILE, the folder fsynced.  At every instant FILE or
// FILE.prev is a complete checkpoint: until the link FILE is, then both
// are, the last rename atomically swaps FILE for the new complete one.

// fsync the folder holding path (renames made durable).
static int ckpt_sync_dir(const char *path, McErr *err) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY);
    if (fd < 0) return mc_err(err, "%s: cannot open its folder %s to sync it", path, dir);
    int rc = fsync(fd);
    close(fd);
    return rc ? mc_err(err, "%s: fsync of folder %s failed", path, dir) : 0;
}

// Testing only: MCLIP_CKPT_PAUSE_MS=N sleeps N ms at each step of a save
// (so that a kill can land between its writes and renames).
static void ckpt_pause(void) {
    const char *e = getenv("MCLIP_CKPT_PAUSE_MS");
    long ms = e ? atol(e) : 0;
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

// Offset of the 64 hex digits of the file checksum in a checkpoint image b
// [n] (inside its JSON header), or -1 when absent.
static long ckpt_sum_offset(const unsigned char *b, size_t n) {
    static const char key[] = "\"" CKPT_FILE_SUM "\":\"";
    size_t kl = sizeof key - 1;
    if (n < 8) return -1;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];   // little-endian length
    if (hl > n - 8) return -1;
    const unsigned char *h = b + 8;
    for (size_t i = 0; i + kl + 65 <= hl; i++)
        if (!memcmp(h + i, key, kl) && h[i + kl + 64] == '"') return (long)(8 + i + kl);
    return -1;
}

// SHA-256 hex of the image b [n] with its checksum digits (at off) as '0'.
static void ckpt_file_sum(unsigned char *b, size_t n, long off, char hex[65]) {
    char keep[64];
    memcpy(keep, b + off, 64);
    memset(b + off, '0', 64);
    ds_sha256_hex(b, n, hex);
    memcpy(b + off, keep, 64);
}

// Whole file into memory (mc_malloc'd; *n its size).
static unsigned char *ckpt_slurp(const char *path, size_t *n, McErr *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        mc_err(err, "%s: cannot open the checkpoint", path);
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) || sb.st_size < 0) {
        fclose(f);
        mc_err(err, "%s: cannot stat the checkpoint", path);
        return NULL;
    }
    *n = (size_t)sb.st_size;
    unsigned char *b = mc_malloc(*n + 1);
    size_t got = fread(b, 1, *n, f);
    fclose(f);
    if (got != *n) {
        mc_free(b);
        mc_err(err, "%s: short read (%zu of %zu bytes)", path, got, *n);
        return NULL;
    }
    return b;
}

// Patch the whole-file checksum into the freshly written path, fsynced.
static int ckpt_seal(const char *path, McErr *err) {
    size_t n;
    unsigned char *b = ckpt_slurp(path, &n, err);
    if (!b) return -1;
    long off = ckpt_sum_offset(b, n);
    char hex[65];
    if (off >= 0) ckpt_file_sum(b, n, off, hex);
    mc_free(b);
    if (off < 0) return mc_err(err, "%s: checksum field not found after writing", path);
    int fd = open(path, O_WRONLY);
    if (fd < 0) return mc_err(err, "%s: cannot reopen to seal it", path);
    int ok = pwrite(fd, hex, 64, off) == 64 && fsync(fd) == 0;
    close(fd);
    return ok ? 0 : mc_err(err, "%s: writing its checksum failed", path);
}

// Move the finished path_new into place, keeping a good old one as .prev.
static int ckpt_install(const char *path, const char *path_new, int keep_old, McErr *err) {
    char prev[4096];
    snprintf(prev, sizeof prev, "%s.prev", path);
    struct stat sb;
    ckpt_pause();
    if (keep_old && stat(path, &sb) == 0) {
        // FILE.prev as a second link to FILE, so FILE never goes missing;
        // where hard links are not supported, a rename (FILE then missing
        // until the next rename; resume sees FILE.new and uses FILE.prev).
        if (unlink(prev) && stat(prev, &sb) == 0)
            return mc_err(err, "%s: cannot remove the older checkpoint", prev);
        if (link(path, prev) && rename(path, prev))
            return mc_err(err, "%s: cannot link or rename it to %s", path, prev);
        if (ckpt_sync_dir(path, err)) return -1;
        ckpt_pause();
    }
    if (rename(path_new, path)) return mc_err(err, "%s: cannot rename it to %s", path_new, path);
    return ckpt_sync_dir(path, err);
}

static int ckpt_write(const char *path, const char *fp, const CoopPrompt *p, const State *s,
                      int64_t n_train, McErr *err) {
    int64_t st[9];
    pack_state(s, st);
    Bytes x = {0};
    ckpt_bytes(&x, fp, p, s, st, n_train);
    char sum[65];
    ds_sha256_hex(x.b, x.len, sum);
    mc_free(x.b);

    StWriter *w = st_writer_new();
    const Tensor *c = p->ctx;
    st_writer_add_f32(w, "ctx", c->ndim, c->shape, c->data);
    st_writer_add_f32(w, "opt_m", MC_DIMS(s->opt.n), s->opt.m);
    if (s->opt.v) st_writer_add_f32(w, "opt_v", MC_DIMS(s->opt.n), s->opt.v);
    st_writer_add_f32(w, "best_ctx", c->ndim, c->shape, s->best_ctx);
    st_writer_add_i64(w, "order", MC_DIMS(n_train), s->order);
    st_writer_add_i64(w, "state", MC_DIMS(9), st);
    if (s->step) st_writer_add_f32(w, "loss", MC_DIMS(s->step), s->loss);
    if (s->n_evals) {
        // Doubles kept bit for bit as int64.
        int64_t *bits = mc_malloc((size_t)s->n_evals * 2 * sizeof *bits);
        memcpy(bits, s->eval_train, (size_t)s->n_evals * sizeof(double));
        memcpy(bits + s->n_evals, s->eval_val, (size_t)s->n_evals * sizeof(double));
        st_writer_add_i64(w, "eval_step", MC_DIMS(s->n_evals), s->eval_step);
        st_writer_add_i64(w, "eval_acc_bits", MC_DIMS(2, s->n_evals), bits);
        mc_free(bits);
    }
    st_writer_meta(w, "format", CKPT_FORMAT);
    st_writer_meta(w, "fingerprint", fp);
    st_writer_meta(w, "checksum", sum);
    char zeros[65];
    memset(zeros, '0', 64);
    zeros[64] = 0;
    st_writer_meta(w, CKPT_FILE_SUM, zeros);
    // FILE.new written and sealed, then put in place (see above).
    char path_new[4096];
    snprintf(path_new, sizeof path_new, "%s.new", path);
    int rc = st_writer_save(w, path_new, err);
    st_writer_free(w);
    if (!rc) rc = ckpt_seal(path_new, err);
    if (!rc) rc = ckpt_install(path, path_new, s->ckpt_ok, err);
    return rc;
}

static int read_f32(StFile *f, const char *name, float *dst, int64_t n, McErr *err) {
    const StTensor *t = st_find(f, name);
    if (!t || t->numel != n || t->dtype != ST_F32)
        return mc_err(err, "%s: checkpoint tensor %s missing or of the wrong size (want %lld)",
                      st_path(f), name, (long long)n);
    return st_to_f32(f, t, dst, n, err);
}

static int read_i64(StFile *f, const char *name, int64_t *dst, int64_t n, McErr *err) {
    const StTensor *t = st_find(f, name);
    if (!t || t->numel != n || t->dtype != ST_I64)
        return mc_err(err, "%s: checkpoint tensor %s missing or of the wrong size (want %lld)",
                      st_path(f), name, (long long)n);
    return st_to_i64(f, t, dst, n, err);
}

// Restore p and s from path; the fingerprint must equal fp and the
// checksum must hold.
static int ckpt_read(const char *path, const char *fp, CoopPrompt *p, State *s,
                     int64_t n_train, McErr *err) {
    // The whole file's checksum first: any damaged, missing or extra byte.
    size_t nb;
    unsigned char *img = ckpt_slurp(path, &nb, err);
    if (!img) return -1;
    long off = ckpt_sum_offset(img, nb);
    char fsum[65];
    if (off >= 0) ckpt_file_sum(img, nb, off, fsum);
    if (nb < 8 || off < 0 || memcmp(fsum, img + off, 64)) {
        if (nb < 8) mc_err(err, "%s: checkpoint is %zu bytes (truncated)", path, nb);
        else if (off < 0)
            mc_err(err, "%s: no whole-file checksum found in the header (%zu bytes; truncated, "
                   "damaged, or not a %s checkpoint)", path, nb, CKPT_FORMAT);
        else {
            // Say also when the (damaged) file names another configuration.
            McErr e2;
            StFile *g = st_open_mem(img, nb, path, &e2);
            const char *gfp = g ? st_meta(g, "fingerprint") : NULL;
            int foreign = gfp && strcmp(gfp, fp);
            if (g) st_close(g);
            mc_err(err, "%s: whole-file checksum mismatch (stored %.16s..., computed %.16s..., "
                   "%zu bytes): the file is damaged or truncated%s", path,
                   (const char *)img + off, fsum, nb,
                   foreign ? "; it also belongs to another configuration or data set" : "");
        }
        mc_free(img);
        return -1;
    }
    StFile *f = st_open_mem(img, nb, path, err);
    if (!f) {
        mc_free(img);
        return -1;
    }
    // The caller's prompt comes back unchanged when the file is refused
    // after its values were read into place.
    size_t ctx_bytes = (size_t)p->ctx->n * sizeof(float);
    float *ctx_keep = mc_malloc(ctx_bytes);
    memcpy(ctx_keep, p->ctx->data, ctx_bytes);
    int rc = -1;
    int64_t st[9];
    const char *fmt = st_meta(f, "format"), *ffp = st_meta(f, "fingerprint");
    const char *sum = st_meta(f, "checksum");
    if (!fmt || strcmp(fmt, CKPT_FORMAT) || !sum) {
        mc_err(err, "%s: not an mclip CoOp checkpoint (format %s)", path, fmt ? fmt : "missing");
        goto done;
    }
    if (!ffp || strcmp(ffp, fp)) {
        mc_err(err, "%s: the checkpoint belongs to another configuration or data set; start "
               "without --resume or use another checkpoint path.\n  checkpoint: %s\n  this run:   "
               "%s", path, ffp ? ffp : "(none)", fp);
        goto done;
    }
    if (read_f32(f, "ctx", p->ctx->data, p->ctx->n, err) ||
        read_f32(f, "opt_m", s->opt.m, s->opt.n, err) ||
        (s->opt.v && read_f32(f, "opt_v", s->opt.v, s->opt.n, err)) ||
        read_f32(f, "best_ctx", s->best_ctx, p->ctx->n, err) ||
        read_i64(f, "order", s->order, n_train, err) || read_i64(f, "state", st, 9, err))
        goto done;
    if (st[0] < 0 || st[0] > s->total || st[8] < 0 || st[8] > 1000000) {
        mc_err(err, "%s: checkpoint step %lld outside 0..%lld", path, (long long)st[0],
               (long long)s->total);
        goto done;
    }
    s->step = st[0];
    s->opt.step = st[1];
    for (int i = 0; i < 4; i++) memcpy(&s->rng.s[i], &st[2 + i], sizeof(int64_t));
    s->best_step = st[6];
    memcpy(&s->best_acc, &st[7], sizeof(double));
    if (s->step && read_f32(f, "loss", s->loss, s->step, err)) goto done;
    int ne = (int)st[8];
    s->n_evals = 0;
    if (ne) {
        int64_t *steps = mc_malloc((size_t)ne * sizeof *steps);
        int64_t *bits = mc_malloc((size_t)ne * 2 * sizeof *bits);
        if (read_i64(f, "eval_step", steps, ne, err) ||
            read_i64(f, "eval_acc_bits", bits, 2 * ne, err)) {
            mc_free(steps), mc_free(bits);
            goto done;
        }
        for (int i = 0; i < ne; i++) {
            double tr, va;
            memcpy(&tr, &bits[i], sizeof tr);
            memcpy(&va, &bits[ne + i], sizeof va);
            add_eval(s, steps[i], tr, va);
        }
        mc_free(steps), mc_free(bits);
    }

    // The checksum over everything restored.
    Bytes x = {0};
    ckpt_bytes(&x, fp, p, s, st, n_train);
    char got[65];
    ds_sha256_hex(x.b, x.len, got);
    mc_free(x.b);
    if (strcmp(got, sum)) {
        mc_err(err, "%s: checkpoint checksum mismatch (stored %.16s..., computed %.16s...): the "
               "file is damaged; delete it to start over", path, sum, got);
        goto done;
    }
    rc = 0;
done:
    if (rc) memcpy(p->ctx->data, ctx_keep, ctx_bytes);
    mc_free(ctx_keep);
    st_close(f);
    mc_free(img);
    return rc;
}

// ---- the loop ----

static void fmt_eta(char *buf, size_t len, double sec) {
    if (sec < 0 || !isfinite(sec)) sec = 0;
    long s = (long)(sec + 0.5);
    if (s >= 3600) snprintf(buf, len, "%ldh%02ldm", s / 3600, (s / 60) % 60);
    else if (s >= 60) snprintf(buf, len, "%ldm%02lds", s / 60, s % 60);
    else snprintf(buf, len, "%lds", s);
}

static int save_prompt(const char *path, CoopPrompt *p, const float *ctx, const CoopTrainCfg *c,
                       McErr *err) {
    if (!path) return 0;
    float *keep = NULL;
    if (ctx != p->ctx->data) {
        keep = mc_malloc((size_t)p->ctx->n * sizeof *keep);
        memcpy(keep, p->ctx->data, (size_t)p->ctx->n * sizeof *keep);
        memcpy(p->ctx->data, ctx, (size_t)p->ctx->n * sizeof *keep);
    }
    int rc = coop_promptfile_save(path, p, &c->meta, err);
    if (keep) {
        memcpy(p->ctx->data, keep, (size_t)p->ctx->n * sizeof *keep);
        mc_free(keep);
    }
    return rc;
}

// Evaluate, record, keep the best; prints the eval line.
static int do_eval(const CoopTrainCfg *c, CoopEngine *e, CoopPrompt *p, const CoopSeqs *cls,
                   const CoopTrainSet *tr, const CoopTrainSet *va, State *s, McErr *err) {
    int64_t E = e->tt->cfg.embed;
    float *tn = class_features(e, p, cls);
    double tr_acc = eval_split(tn, cls->R, E, tr, c->scale, NULL, NULL, NULL);
    double va_acc = -1, va_loss = 0;
    if (va && va->n) va_acc = eval_split(tn, cls->R, E, va, c->scale, NULL, NULL, &va_loss);
    mc_free(tn);
    add_eval(s, s->step, tr_acc, va_acc);
    // The best prompt on val (the earliest on ties); without val, the last.
    if (va_acc > s->best_acc || s->best_step < 0) {
        s->best_acc = va_acc;
        s->best_step = s->step;
        memcpy(s->best_ctx, p->ctx->data, (size_t)p->ctx->n * sizeof(float));
        if (va && va->n && save_prompt(c->best_path, p, s->best_ctx, c, err)) return -1;
    }
    if (c->progress) {
        if (va && va->n)
            fprintf(c->progress, "eval  step %lld | train acc %.4f | val acc %.4f | val loss %.4f"
                    " | best %.4f @ %lld\n", (long long)s->step, tr_acc, va_acc, va_loss,
                    s->best_acc, (long long)s->best_step);
        else
            fprintf(c->progress, "eval  step %lld | train acc %.4f | (no val set)\n",
                    (long long)s->step, tr_acc);
        fflush(c->progress);
    }
    return 0;
}

int coop_train(const CoopTrainCfg *c, TextTower *tt, CoopPrompt *p, const CoopSeqs *cls,
               const CoopTrainSet *tr, const CoopTrainSet *va, CoopTrainResult *res,
               McErr *err) {
    memset(res, 0, sizeof *res);
    int64_t E = tt->cfg.embed, n = tr->n, B = c->batch;
    if (n < 1 || B < 1 || c->epochs < 1)
        return mc_err(err, "train: need training images (%lld), batch >= 1 (%lld) and "
                      "epochs >= 1 (%d)", (long long)n, (long long)B, c->epochs);
    for (int64_t i = 0; i < n; i++)
        if (tr->labels[i] < 0 || tr->labels[i] >= cls->R)
            return mc_err(err, "train: label %d of training image %lld outside the %lld "
                          "classes", tr->labels[i], (long long)i, (long long)cls->R);

    // State: steps, order, RNG, optimizer, best prompt, histories.
    State s = {0};
    s.spe = (n + B - 1) / B;
    s.total = (int64_t)c->epochs * s.spe;
    if (c->max_steps > 0 && c->max_steps < s.total) s.total = c->max_steps;
    s.order = mc_malloc((size_t)n * sizeof *s.order);
    for (int64_t i = 0; i < n; i++) s.order[i] = i;
    coop_rng_seed(&s.rng, c->seed);
    coop_optim_init(&s.opt, &c->opt, p->ctx->n);
    s.best_ctx = mc_malloc((size_t)p->ctx->n * sizeof *s.best_ctx);
    memcpy(s.best_ctx, p->ctx->data, (size_t)p->ctx->n * sizeof *s.best_ctx);
    s.best_acc = -1, s.best_step = -1;
    s.loss = mc_malloc((size_t)(s.total + 1) * sizeof *s.loss);
    char fp[1024];
    fingerprint(fp, sizeof fp, c, p, cls, tr, va, E);

    // Resume from the checkpoint when asked and present; a damaged or
    // missing FILE falls back to FILE.prev (with a warning).
    struct stat stt;
    int rc = -1;
    char prev[4096] = "";
    if (c->ckpt_path) snprintf(prev, sizeof prev, "%s.prev", c->ckpt_path);
    int have = c->ckpt_path && stat(c->ckpt_path, &stt) == 0;
    // FILE missing counts as an interrupted save only while FILE.new is
    // there; otherwise there is no checkpoint (a fresh start).
    char pnew[4096] = "";
    if (c->ckpt_path) snprintf(pnew, sizeof pnew, "%s.new", c->ckpt_path);
    int have_prev = c->ckpt_path && stat(prev, &stt) == 0 &&
                    (have || stat(pnew, &stt) == 0);
    if (c->resume && (have || have_prev)) {
        FILE *wf = c->progress ? c->progress : stderr;
        McErr e1 = {{0}}, e2 = {{0}};
        const char *from = c->ckpt_path;
        if (!have || ckpt_read(c->ckpt_path, fp, p, &s, n, &e1)) {
            if (!have)
                snprintf(e1.msg, sizeof e1.msg, "%s: missing (a save was interrupted)",
                         c->ckpt_path);
            fprintf(wf, "warning: checkpoint not usable: %s\n", e1.msg);
            if (!have_prev || ckpt_read(prev, fp, p, &s, n, &e2)) {
                if (!have_prev) snprintf(e2.msg, sizeof e2.msg, "%s: missing", prev);
                mc_err(err, "no usable checkpoint to resume from:\n  %s\n  %s\nremove %s and "
                       "%s to start over", e1.msg, e2.msg, c->ckpt_path, prev);
                goto done;
            }
            from = prev;
            res->resumed_from_prev = 1;
            fprintf(wf, "warning: resuming from the previous checkpoint %s\n", prev);
            fflush(wf);
        } else {
            s.ckpt_ok = 1;
        }
        res->resumed = 1, res->resumed_at = s.step;
        if (c->progress)
            fprintf(c->progress, "resumed from %s at step %lld/%lld\n", from,
                    (long long)s.step, (long long)s.total);
    }

    CoopEngine *e = coop_engine_new(tt, c->chunk);
    float *bf = mc_malloc((size_t)(B * E) * sizeof *bf);
    int32_t *bl = mc_malloc((size_t)B * sizeof *bl);
    double t_call = mc_time(), t_steps = 0;
    int64_t timed = 0, done_here = 0;
    if (s.step == 0 && do_eval(c, e, p, cls, tr, va, &s, err)) goto done_e;

    while (s.step < s.total) {
        int64_t epoch = s.step / s.spe, pos = s.step % s.spe;
        double t0 = mc_time();

        // The epoch's order (reshuffled at its start), then this step's batch.
        if (pos == 0 && c->shuffle) coop_rng_shuffle(&s.rng, s.order, n);
        int64_t i0 = pos * B, nb = n - i0 < B ? n - i0 : B;
        for (int64_t i = 0; i < nb; i++) {
            int64_t r = s.order[i0 + i];
            memcpy(bf + i * E, tr->feat + r * E, (size_t)E * sizeof *bf);
            bl[i] = tr->labels[r];
        }

        // Loss, gradient and one update.
        double lr = coop_lr_at(&c->opt, epoch);
        tensor_zero_grad(p->ctx);
        double loss = coop_loss_cls(e, p, cls, bf, bl, nb, c->scale, NULL);
        coop_optim_step(&s.opt, p->ctx->data, p->ctx->grad, lr);
        s.loss[s.step++] = (float)loss;
        done_here++;

        // Progress: step time (the first step of a call warms caches up).
        double dt = mc_time() - t0;
        if (done_here > 1 || s.total - s.step == 0) t_steps += dt, timed++;
        double mean = timed ? t_steps / (double)timed : dt;
        char eta[32];
        fmt_eta(eta, sizeof eta, mean * (double)(s.total - s.step));
        if (c->progress) {
            fprintf(c->progress, "step %4lld/%lld | loss %.4f | lr %.2e | %.1f ms | ETA %s\n",
                    (long long)s.step, (long long)s.total, loss, lr, dt * 1e3, eta);
            fflush(c->progress);
        }

        // Evaluation, checkpoint, early stop (tests).
        int last = s.step == s.total;
        if ((c->eval_every > 0 && s.step % c->eval_every == 0) || last)
            if (do_eval(c, e, p, cls, tr, va, &s, err)) goto done_e;
        if (c->ckpt_path && (s.step % (c->ckpt_every > 0 ? c->ckpt_every : 1) == 0 || last)) {
            if (ckpt_write(c->ckpt_path, fp, p, &s, n, err)) goto done_e;
            s.ckpt_ok = 1;
        }
        if (c->stop_after > 0 && done_here >= c->stop_after && !last) {
            if (c->ckpt_path && ckpt_write(c->ckpt_path, fp, p, &s, n, err)) goto done_e;
            s.ckpt_ok = 1;
            rc = -2;
            goto done_e;
        }
    }

    // Final prompts: last, and best on val (the last when there is no val).
    if (save_prompt(c->last_path, p, p->ctx->data, c, err)) goto done_e;
    if (save_prompt(c->best_path, p, va && va->n ? s.best_ctx : p->ctx->data, c, err))
        goto done_e;
    rc = 0;

done_e:
    res->seconds = mc_time() - t_call;
    res->ms_per_step = timed ? t_steps / (double)timed * 1e3 : 0;
    coop_engine_free(e);
    mc_free(bf), mc_free(bl);
done:
    // Results (also after an early stop).
    res->steps = s.step;
    res->steps_per_epoch = s.spe;
    res->first_loss = s.step ? s.loss[0] : 0;
    res->final_loss = s.step ? s.loss[s.step - 1] : 0;
    res->best_val_acc = s.best_acc;
    res->best_step = s.best_step;
    res->last_train_acc = s.n_evals ? s.eval_train[s.n_evals - 1] : 0;
    res->last_val_acc = s.n_evals ? s.eval_val[s.n_evals - 1] : -1;
    res->loss = s.loss, s.loss = NULL;
    res->n_evals = s.n_evals;
    res->eval_step = s.eval_step, s.eval_step = NULL;
    res->eval_train_acc = s.eval_train, s.eval_train = NULL;
    res->eval_val_acc = s.eval_val, s.eval_val = NULL;
    state_free(&s);
    return rc;
}

void coop_train_result_free(CoopTrainResult *r) {
    if (!r) return;
    mc_free(r->loss), mc_free(r->eval_step), mc_free(r->eval_train_acc),
        mc_free(r->eval_val_acc);
    memset(r, 0, sizeof *r);
}
