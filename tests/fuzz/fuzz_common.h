// fuzz_common.h - helpers shared by the libFuzzer harnesses in tests/fuzz/.
//
// Each harness tests/fuzz/fuzz_<name>.c defines one entry function
//     static int fuzz_<name>(const uint8_t *data, size_t size)
// and ends with FUZZ_ENTRY(fuzz_<name>), which becomes libFuzzer's
// LLVMFuzzerTestOneInput.  tests/test_fuzz_regressions.c defines
// FUZZ_NO_MAIN and includes every harness, so the same entry functions
// replay tests/fuzz/regressions/ and the seed corpora in the normal suite,
// without libFuzzer.  Names of static helpers therefore carry the harness
// name (they share one translation unit there).
//
// The oracle of every harness: no crash, no sanitizer report, and a
// rejected input has a non-empty message that names the input (the file
// name given to the parser), as the project's error rule asks.  A broken
// contract prints the message and aborts, which libFuzzer reports as a
// crash and saves the input.
#ifndef MCLIP_FUZZ_COMMON_H
#define MCLIP_FUZZ_COMMON_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../tensor/tensor.h"

#ifdef FUZZ_NO_MAIN
#define FUZZ_ENTRY(fn)
#else
#define FUZZ_ENTRY(fn) \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size); \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fn(data, size); }
#endif

// Abort with a message when a harness contract is broken.
#define FUZZ_REQUIRE(cond, ...) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: fuzz contract broken: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__); \
            fputc('\n', stderr); \
            abort(); \
        } \
    } while (0)

// A rejected input must say why and name the input.
static inline void fuzz_check_err(const McErr *err, const char *name) {
    FUZZ_REQUIRE(err->msg[0] != 0, "error without a message (input %s)", name);
    FUZZ_REQUIRE(strstr(err->msg, name) != NULL, "error does not name the input %s: '%s'",
                 name, err->msg);
}

// ---- temp files for readers that only take a path ----

static char fuzz_dir[256];
static char fuzz_files[8][320];
static int  fuzz_n_files;

// Remove the temp folder and everything in it (readers may have added
// side files, such as a checkpoint's FILE.prev).
static inline void fuzz_cleanup(void) {
    DIR *d = fuzz_dir[0] ? opendir(fuzz_dir) : NULL;
    for (struct dirent *e; d && (e = readdir(d));) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", fuzz_dir, e->d_name);
        if (e->d_name[0] != '.' || (e->d_name[1] && strcmp(e->d_name, ".."))) unlink(p);
    }
    if (d) closedir(d);
    if (fuzz_dir[0]) rmdir(fuzz_dir);
}

// Write data to <private temp folder>/<base> and return the path (valid
// until the next call with the same base).  The folder is made once per
// process under $TMPDIR (default /dev/shm, else /tmp) and removed at
// exit; nothing else is in it, so loaders that look for side files
// (classnames.txt, image folders) find none.
static inline const char *fuzz_write_file(const char *base, const uint8_t *data,
                                          size_t size) {
    if (!fuzz_dir[0]) {
        // Memory-backed /dev/shm when there is one: a disk folder makes
        // the path-based harnesses 10-20x slower on a busy machine.
        const char *t = getenv("TMPDIR");
        if (!t || !*t) t = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fuzz_dir, sizeof fuzz_dir, "%s/mclip-fuzz-XXXXXX", t);
        FUZZ_REQUIRE(mkdtemp(fuzz_dir) != NULL, "cannot create a temp folder %s", fuzz_dir);
        atexit(fuzz_cleanup);
    }
    int slot = 0;
    char path[320];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir, base);
    while (slot < fuzz_n_files && strcmp(fuzz_files[slot], path)) slot++;
    if (slot == fuzz_n_files) {
        FUZZ_REQUIRE(fuzz_n_files < 8, "too many temp files");
        snprintf(fuzz_files[fuzz_n_files++], sizeof fuzz_files[0], "%s", path);
    }
    unlink(fuzz_files[slot]);   // a fresh file, even if a reader hard-linked the old one
    FILE *fp = fopen(fuzz_files[slot], "wb");
    FUZZ_REQUIRE(fp != NULL, "cannot write %s", fuzz_files[slot]);
    FUZZ_REQUIRE(fwrite(data, 1, size, fp) == size, "short write to %s", fuzz_files[slot]);
    FUZZ_REQUIRE(fclose(fp) == 0, "cannot close %s", fuzz_files[slot]);
    return fuzz_files[slot];
}

#endif
