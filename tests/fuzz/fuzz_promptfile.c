// fuzz_promptfile.c - libFuzzer harness for learned-prompt files: the
// same bytes are read as a text prompt (coop/promptfile.h) and as a visual
// prompt (coop/vprompt.h), each either an mclip file (safetensors with
// prompt metadata) or a paper .pt prompt (torch.save of {"ctx", "meta"}),
// told apart by content.  The loaders take a path, so the input is written
// to a temp file named fuzz.prompt.
//
// An accepted text prompt must pass its own configuration check, hold
// (K or 1) x M x W floats that coop_promptfile_prompt copies into a
// CoopPrompt of that shape, and be checked against two models (one may
// refuse it, with a message naming the file).  An accepted visual prompt
// must have a border that fits its image size and turn into a CoopVPrompt.
#include "fuzz_common.h"

#include "../../coop/promptfile.h"
#include "../../coop/vprompt.h"

// The visual-prompt reading of the same file.
static void fuzz_pf_visual(const char *path, const char *name) {
    McErr err = {{0}};
    CoopVPromptFile vf;
    if (coop_vp_load(path, &vf, &err)) {
        fuzz_check_err(&err, name);
        return;
    }
    FUZZ_REQUIRE(vf.border >= 1 && 2 * vf.border <= vf.size && vf.theta, "border %d of %d",
                 vf.border, vf.size);
    if (coop_vp_file_check(&vf, "MobileCLIP2-S0", 256, &err)) fuzz_check_err(&err, name);
    if (coop_vp_file_check(&vf, vf.model_name, vf.size, &err) == 0) {
        CoopVPrompt vp;
        FUZZ_REQUIRE(coop_vp_file_prompt(&vf, &vp, &err) == 0, "visual prompt: %s", err.msg);
        coop_vp_free(&vp);
    }
    coop_vp_file_free(&vf);
}

#define FUZZ_PF_NAME "fuzz.prompt"

static int fuzz_promptfile(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file(FUZZ_PF_NAME, data, size);
    fuzz_pf_visual(path, FUZZ_PF_NAME);
    McErr err = {{0}};
    CoopPromptFile pf;
    if (coop_promptfile_load(path, &pf, &err)) {
        fuzz_check_err(&err, FUZZ_PF_NAME);
        return 0;
    }
    FUZZ_REQUIRE(coop_prompt_check(&pf.cfg, &err) == 0, "accepted config fails: %s", err.msg);
    FUZZ_REQUIRE(pf.width > 0 && pf.ctx != NULL, "width %d", pf.width);
    for (int i = 0; i < pf.n_names; i++) FUZZ_REQUIRE(pf.classnames[i], "class name %d", i);

    // Model checks: another name or width is refused with the file named.
    if (coop_promptfile_check(&pf, "MobileCLIP2-S0", 512, &err)) fuzz_check_err(&err,
                                                                                FUZZ_PF_NAME);
    if (coop_promptfile_check(&pf, pf.model_name, pf.width, &err) == 0) {
        CoopPrompt p;
        FUZZ_REQUIRE(coop_promptfile_prompt(&pf, &p, &err) == 0, "prompt: %s", err.msg);
        FUZZ_REQUIRE(coop_prompt_rows(&p) * pf.width == p.ctx->n, "ctx of %lld floats",
                     (long long)p.ctx->n);
        coop_prompt_free(&p);
    }
    coop_promptfile_free(&pf);
    return 0;
}

FUZZ_ENTRY(fuzz_promptfile)
