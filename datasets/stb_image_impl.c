// stb_image_impl.c - the one translation unit that compiles stb_image 2.27
// (Debian libstb-dev, /usr/include/stb/stb_image.h) for datasets/image.c.
//
// Only the decoders we use are built (JPEG, PNG, GIF, BMP); image.c reads
// the files, so stdio support is left out, and so are the HDR and float
// paths.  STBI_MAX_DIMENSIONS is a backstop: image.c checks the header
// against the configured limits before stb_image allocates anything.
// (gcc 12 and clang 14 with -Wall -Wextra compile it without warnings, so no
// diagnostic pragmas are needed.)
#include "image.h"

#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_GIF
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_MAX_DIMENSIONS DS_IMAGE_HARD_MAX_SIDE
#include <stb/stb_image.h>

// stb_image keeps its last failure reason per thread, and a few failures
// (a zlib block of type 3, for one) set none; image.c clears it before
// each decode so a stale reason from an earlier file is never reported.
void ds_stbi_clear_failure(void);
void ds_stbi_clear_failure(void) { stbi__g_failure_reason = NULL; }
