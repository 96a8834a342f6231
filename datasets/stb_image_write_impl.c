// stb_image_write_impl.c - the one translation unit that compiles
// stb_image_write (Debian libstb-dev, /usr/include/stb/stb_image_write.h)
// for the PNG heatmaps of datasets/metrics.c and the PNG/JPEG files of
// datasets/gen_dataset.c.
//
// Only the memory-callback writers are used (stbi_write_png_to_func,
// stbi_write_jpg_to_func): the callers own file handling, so a failed write
// is reported with the path and never leaves a half file behind.
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include <stb/stb_image_write.h>
