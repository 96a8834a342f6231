// promptfile.h - learned prompts on disk: mclip's prompt file (a small
// safetensors), and the paper's torch.save prompt files read through
// mobileclip/torch_pt.h.
//
// mclip prompt file (a few kB):
//   tensor  ctx               F32 or F16, [M, W] or [K, M, W] (class-specific)
//   metadata (all strings)
//     mclip_prompt        "1" (format version)
//     prompt_type         "text"
//     model_name          "MobileCLIP2-S0", ... or "custom"
//     weights_sha256      SHA-256 of the checkpoint file the prompt was
//                         trained with ("" when unknown)
//     random_weights      "1" when that checkpoint had random weights
//     n_ctx, width, csc, n_cls
//     class_position      end | middle | front
//     pooling             argmax | eot | legacy
//     sequence_form       template | paper
//     dtype               fp32 | fp16
//     classnames          JSON array of the class names (verbatim)
//     classnames_sha1     SHA-1 of json.dumps(names, ensure_ascii=False)
//                         with Python's default separators (datasets.md 8.1)
//     source              "mclip" or the path of a converted .pt
//     extra keys given by the writer (training settings, steps, ...)
//
// Paper prompt file (torch.save of {"ctx": Tensor[M, W], "meta": dict},
// paper-protocol section 13): meta.model_name (required), n_ctx,
// classnames, classnames_sha1, coop_version (missing -> v0.1.0 = legacy
// pooling; "v0.1.1" -> eot pooling), prompt_type (missing -> "text"; "vis"
// is a visual prompt and refused here).  Read as the paper form, unified
// context, class token at the end.
//
// A prompt is independent of the backbone: loading one into a running
// model just replaces the CoopPrompt (hot swap); coop_promptfile_check
// refuses a prompt made for another model or width.
//
// Usage sketch (compiled by tests/test_coop_train.c):
//
//     CoopPromptFile pf;
//     if (coop_promptfile_load("flowers.prompt", &pf, &err)) ...;   // or a .pt
//     if (coop_promptfile_check(&pf, model->name, model->text.cfg.width, &err)) ...;
//     CoopPrompt p;
//     coop_promptfile_prompt(&pf, &p, &err);
//     coop_promptfile_free(&pf);
#ifndef MCLIP_COOP_PROMPTFILE_H
#define MCLIP_COOP_PROMPTFILE_H

#include "prompt.h"

#define COOP_PROMPT_FORMAT "1"

typedef struct CoopPromptFile {
    CoopPromptCfg cfg;
    int     width;           // W
    int     n_cls;           // K of class-specific contexts (0 when unified)
    float  *ctx;             // [M*W] or [K*M*W]
    int     fp16;            // stored as F16
    char    model_name[64];
    char    weights_sha256[65];
    int     random_weights;
    char  **classnames;      // [n_names] (may be 0)
    int     n_names;
    char    classnames_sha1[41];
    char    source[512];     // the path it was read from
    char    coop_version[16];// paper files: "v0.1.1", or "" (legacy)
} CoopPromptFile;

// What a writer records besides the prompt itself.
typedef struct CoopPromptMeta {
    const char *model_name;
    const char *weights_sha256;      // may be NULL
    int         random_weights;
    char *const *classnames;         // may be NULL
    int         n_names;
    int         fp16;                // store ctx as F16
    const char *const *extra_keys;   // n_extra key/value pairs, may be NULL
    const char *const *extra_values;
    int         n_extra;
} CoopPromptMeta;

// Write p atomically (temp file, fsync, rename, fsync of the folder).
int  coop_promptfile_save(const char *path, const CoopPrompt *p, const CoopPromptMeta *meta,
                          McErr *err);
// Read an mclip prompt file or a paper .pt file (detected by content).
int  coop_promptfile_load(const char *path, CoopPromptFile *pf, McErr *err);
void coop_promptfile_free(CoopPromptFile *pf);
// 0 if the prompt fits a model of this name and text width; else -1.
int  coop_promptfile_check(const CoopPromptFile *pf, const char *model_name, int width,
                           McErr *err);
// A CoopPrompt holding the file's context (replaces nothing in the model).
int  coop_promptfile_prompt(const CoopPromptFile *pf, CoopPrompt *p, McErr *err);

// SHA-1 of names as Python's json.dumps(names, ensure_ascii=False) writes
// them (delegates to datasets/dataset.h).
void coop_classnames_sha1(char *const *names, int n, char hex[41]);

#endif
