// gen_dataset.h - a small procedurally drawn classification and caption
// dataset, written in every on-disk layout mclip reads, for tests and demos.
//
// Class c draws a shape (circle, square, triangle, ring, cross, diamond,
// stripes, checkerboard: c % 8) in a colour (red, green, blue, yellow,
// magenta, cyan, orange, purple: (c + c / 8) % 8) over a noisy grey background;
// each image jitters position, size, colour and noise, so a classifier has
// something to learn and nothing to memorise.  Sizes vary by one pixel
// around `size` (odd sizes occur).  Everything is a function of the seed.
//
// Layout under OUT_DIR (C classes, M images per class; split of image i of
// a class: i < M/2 train, i < M/2 + M/5 val, else test):
//   imagefolder/<class>/img_NNN.{png,jpg}     PNG and JPEG alternate; some RGBA
//   tsv/images/... + tsv/manifest.tsv (path, label, split) + classnames.txt
//       + tsv/captions.tsv (path<TAB>caption)
//   coop/oxford_flowers/{jpg/, imagelabels.mat, cat_to_name.json,
//       split_zhou_OxfordFlowers.json}
//   flowers102/{jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat}: genuine
//       compressed level-5 MAT files (miCOMPRESSED, labels as miUINT8, ids
//       as miUINT16); image ids shuffled across classes, trnid unsorted
//   dtd/dtd/{images/<class>/<class>_NNNN.jpg, labels/{train,val,test}{1,2}.txt}
//   caltech101/caltech-101/101_ObjectCategories/<folder>/image_NNNN.jpg with
//       folders Faces, Leopards, Motorbikes, airplanes, then generated
//       names, plus BACKGROUND_Google and Faces_easy (which CoOp drops);
//       every 7th image a grayscale JPEG
//   sun397/{SUN397/<l>/<class>[/<sub>]/sun_<16 letters>.jpg, ClassName.txt,
//       Training_01.txt, Testing_01.txt}; one PNG file named .jpg
//   flickr30k/{flickr30k-images/<id>.jpg, dataset_flickr30k.json (Karpathy),
//       results_20130124.token}: 5 captions per image
//
// Usage sketch (compiled by tests/test_datasets.c):
//
//     GenOptions g = gen_defaults();
//     g.classes = 4; g.per_class = 10; g.size = 24;
//     if (gen_dataset("/tmp/gen", &g, &err)) fprintf(stderr, "%s\n", err.msg);
#ifndef MCLIP_GEN_DATASET_H
#define MCLIP_GEN_DATASET_H

#include <stdint.h>

#include "../tensor/tensor.h"

#define GEN_MAX_CLASSES 102   // Flowers102's label range

typedef struct GenOptions {
    int      classes;       // C, 2..GEN_MAX_CLASSES
    int      per_class;     // M, 5..1000
    int      size;          // nominal side in pixels, 8..1024
    uint64_t seed;
    int      jpeg_quality;  // 1..100
} GenOptions;

GenOptions gen_defaults(void);   // 5 classes, 12 per class, 64 px, seed 1, quality 90

// Name of generated class c ("red_circle", ...), in buf.
const char *gen_class_name(int c, char *buf, size_t len);
// Draw image idx of class c at w x h into rgb[h * w * 3].
void gen_draw(const GenOptions *o, int c, int idx, int w, int h, uint8_t *rgb);
// Encode pixels (comp 1, 3 or 4 channels) as PNG or JPEG and write them
// atomically to path.
int gen_write_image(const char *path, int w, int h, int comp, const uint8_t *px, int jpeg,
                    int quality, McErr *err);
// Write every layout under out_dir (created if needed).
int gen_dataset(const char *out_dir, const GenOptions *o, McErr *err);

#endif
