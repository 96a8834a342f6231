// dataset.h - image-classification datasets (and caption sets) as lists of
// files: loaders for every on-disk layout mclip reads, class-name lists,
// layout detection, manifest writing.
//
// A Dataset is a list of items (image path, 0-based label, split) plus the
// class names.  Images are not opened here (datasets/image.h decodes them).
// A CaptionSet is a list of images, each with its captions in file order.
//
// Layouts (../shared/datasets.md; section numbers refer to it):
//   tsv          path<TAB>label[<TAB>split|classname] manifest (§9.1)
//   imagefolder  root/<class>/**/<image>, classes sorted bytewise, dotfiles
//                skipped; root/{train,val,test}/<class>/... also read
//   coop-json    CoOp split_zhou_*.json (§7) + its image folder
//   flowers102   jpg/ + imagelabels.mat + setid.mat (§1): trnid/valid/tstid
//   dtd          images/ + labels/{train,val,test}N.txt (§2), partition N
//   caltech101   101_ObjectCategories/ (§3), CoOp's 100 classes (drop
//                BACKGROUND_Google and Faces_easy, rename four), no split;
//                names_form "paper": 101 lowercased classes (flwrlabs)
//   sun397       SUN397/ + ClassName.txt + Training_NN / Testing_NN (§4)
//   flickr30k    Karpathy dataset_flickr30k.json or results_20130124.token,
//                images in flickr30k-images/ (§5) - a CaptionSet
//   caption-tsv  path<TAB>caption manifest (§9.1 retrieval form)
// ds_detect() finds the layout under a folder (optionally told the dataset
// with a preset name) or from a file's name and contents.
//
// Class-name files (datasets/classnames/*.txt, or any classnames.txt): one
// name per line, read verbatim (only "\n" / "\r\n" stripped, spaces kept -
// the paper's Flowers names have leading and trailing spaces); lines
// starting with '#' at the top of the file are comments.
//
// Errors name the file, the line (where there is one), what was expected
// and what was found.  Loaders never print.
//
// Usage sketch (compiled by tests/test_datasets.c):
//
//     McErr err;
//     DsOptions opt = {.dataset = "flowers102"};
//     Dataset *ds = ds_open("/data/flowers", &opt, &err);
//     if (!ds) { fprintf(stderr, "%s\n", err.msg); return 1; }
//     printf("%s: %d classes, %lld train\n", ds->layout, ds->n_classes,
//            (long long)ds_count_split(ds, DS_TRAIN));
//     for (int64_t i = 0; i < ds->n_items; i++)
//         use(ds->items[i].path, ds->items[i].label);
//     ds_free(ds);
#ifndef MCLIP_DATASET_H
#define MCLIP_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "../tensor/tensor.h"

#define DS_MAX_LINE    (64 * 1024)   // longest manifest line accepted
#define DS_MAX_CLASSES 100000
#define DS_MAX_TEXT    ((size_t)512 << 20)  // largest text/JSON file read

typedef enum { DS_NONE = 0, DS_TRAIN = 1, DS_VAL = 2, DS_TEST = 3 } DsSplit;

typedef struct DsItem {
    char *path;    // root + "/" + rel: the path to open
    char *rel;     // relative to Dataset.root, as written in manifests
    int   label;   // 0 .. n_classes-1
    int   split;   // DsSplit
} DsItem;

typedef struct Dataset {
    char    *name;          // preset name ("flowers102", ...) or the layout
    char    *layout;        // how it was read ("flowers102-native", "tsv", ...)
    char    *root;          // folder item paths are relative to
    char    *source;        // the file or folder it was read from
    char    *names_source;  // where the class names came from
    DsItem  *items;         // [n_items], in the order the source lists them
    int64_t  n_items, cap_items;
    char   **classes;       // [n_classes]
    int      n_classes, cap_classes;
} Dataset;

typedef struct DsOptions {
    const char *dataset;     // preset: flowers102 dtd caltech101 sun397 flickr30k
                             // eurosat, or NULL (detect)
    const char *layout;      // NULL (detect), "native", "coop", "imagefolder", "tsv"
    const char *classnames;  // class-names file overriding the default, or NULL
    const char *names_form;  // "coop" (default) or "paper" (datasets.md §8)
    int         partition;   // DTD / SUN397 partition 1..10 (0 means 1)
    int         allow_outside;    // TSV: accept absolute and '..' paths
    int         allow_duplicates; // TSV: accept a path listed twice
} DsOptions;

// ---- Dataset basics ----

Dataset    *ds_new(const char *name, const char *layout, const char *root,
                   const char *source);
void        ds_free(Dataset *ds);
// Append an item (rel is copied; path = root/rel).  Returns its index.
int64_t     ds_add_item(Dataset *ds, const char *rel, int label, int split);
int         ds_add_class(Dataset *ds, const char *name);   // returns its label
void        ds_set_names_source(Dataset *ds, const char *what);
int64_t     ds_count_split(const Dataset *ds, int split);   // split -1: all
// counts[n_classes] = items of each class in split (-1: all splits).
void        ds_class_counts(const Dataset *ds, int split, int64_t *counts);
const char *ds_split_name(int split);        // "train", "val", "test", "none"
int         ds_split_parse(const char *s);   // -1 if unknown (accepts "validation")

// ---- loaders ----

Dataset *ds_load_imagefolder(const char *root, McErr *err);
// manifest: a TSV file (§9.1).  classnames: a names file for label names
// and name-valued labels, or NULL (then <manifest folder>/classnames.txt
// when present).
Dataset *ds_load_tsv(const char *manifest, const char *classnames, const DsOptions *opt,
                     McErr *err);
// A CoOp split JSON; image_dir NULL derives it from the file name
// (split_zhou_OxfordFlowers.json -> <json folder>/jpg, ...).
Dataset *ds_load_coop_json(const char *json_path, const char *image_dir, McErr *err);
Dataset *ds_load_flowers102(const char *root, const DsOptions *opt, McErr *err);
Dataset *ds_load_dtd(const char *root, const DsOptions *opt, McErr *err);
Dataset *ds_load_caltech101(const char *root, const DsOptions *opt, McErr *err);
Dataset *ds_load_sun397(const char *root, const DsOptions *opt, McErr *err);

// ---- captions (retrieval) ----

typedef struct CsImage {
    char *path;        // root/rel
    char *rel;
    int   split;       // DsSplit
    int   first;       // index of its first caption in CaptionSet.captions
    int   n;           // number of captions
} CsImage;

typedef struct CaptionSet {
    char    *layout;          // "karpathy-json", "flickr-token", "caption-tsv"
    char    *root;
    char    *source;
    CsImage *images;          // [n_images]
    int      n_images, cap_images;
    char   **captions;        // [n_captions], grouped by image, file order
    int     *caption_image;   // [n_captions] image index of each caption
    int      n_captions, cap_captions;
} CaptionSet;

// Karpathy JSON (image_dir: folder holding the files named in it, NULL =
// <json folder>/flickr30k-images when present, else the json folder).
CaptionSet *cs_load_karpathy(const char *json_path, const char *image_dir, McErr *err);
// results_20130124.token ("<file>#<n><TAB>caption"); all splits DS_NONE.
CaptionSet *cs_load_token(const char *token_path, const char *image_dir, McErr *err);
// path<TAB>caption TSV (several rows per image allowed, order preserved).
CaptionSet *cs_load_tsv(const char *manifest, const DsOptions *opt, McErr *err);
void        cs_free(CaptionSet *cs);
int         cs_count_split(const CaptionSet *cs, int split);   // images; -1: all

// ---- layout detection ----

typedef enum {
    DS_LAYOUT_NONE, DS_LAYOUT_TSV, DS_LAYOUT_IMAGEFOLDER, DS_LAYOUT_COOP_JSON,
    DS_LAYOUT_FLOWERS102, DS_LAYOUT_DTD, DS_LAYOUT_CALTECH101, DS_LAYOUT_SUN397,
    DS_LAYOUT_KARPATHY, DS_LAYOUT_FLICKR_TOKEN, DS_LAYOUT_CAPTION_TSV
} DsLayout;

#define DS_PATH_MAX 4096

typedef struct DsSource {
    DsLayout layout;
    char     dataset[32];           // preset name when known, else ""
    char     root[DS_PATH_MAX];     // dataset folder
    char     file[DS_PATH_MAX];     // manifest / JSON / token file, or ""
    char     image_dir[DS_PATH_MAX];// image folder for JSON layouts, or ""
} DsSource;

const char *ds_layout_name(DsLayout l);
// 1 for the caption layouts (load with cs_open), 0 otherwise.
int         ds_layout_is_captions(DsLayout l);
// Find the layout of path (a folder or a file).  opt may be NULL.
int         ds_detect(const char *path, const DsOptions *opt, DsSource *src, McErr *err);
// Detect and load a classification dataset / a caption set.
Dataset    *ds_open(const char *path, const DsOptions *opt, McErr *err);
CaptionSet *cs_open(const char *path, const DsOptions *opt, McErr *err);
Dataset    *ds_load_source(const DsSource *src, const DsOptions *opt, McErr *err);
CaptionSet *cs_load_source(const DsSource *src, const DsOptions *opt, McErr *err);

// ---- class names ----

// Read a names file verbatim (see top).  *names malloc'd (free with
// ds_names_free).  Returns 0 or -1.
int  ds_read_classnames(const char *path, char ***names, int *n, McErr *err);
void ds_names_free(char **names, int n);
// SHA-1 of the names as Python's json.dumps(names, ensure_ascii=False)
// writes them (datasets.md §8.1 fingerprints), as 40 hex digits.
void ds_classnames_sha1(char *const *names, int n, char hex[41]);
// The shipped names file for a preset and form ("coop" / "paper"):
// $MCLIP_CLASSNAMES_DIR/<dataset>_<form>.txt, else
// datasets/classnames/<dataset>_<form>.txt.  Returns buf, or NULL when no
// such file exists.
const char *ds_classnames_file(const char *dataset, const char *form, char *buf, size_t len);

// ---- manifests ----

// Write the items of `split` (-1: all) as a TSV manifest: the comment lines
// given (each written after "# "), a header "path\tlabel\tsplit", then one
// row per item in order.  Written to a temp file and renamed.
int ds_write_tsv(const Dataset *ds, const char *path, int split, const char *const *comments,
                 int n_comments, McErr *err);
// Write the class names, one per line, verbatim.
int ds_write_classnames(const Dataset *ds, const char *path, McErr *err);

// ---- utilities shared by the dataset modules ----

// Read a whole file (at most max bytes, else an error).  *out malloc'd and
// NUL-terminated.
int   ds_read_file(const char *path, size_t max, char **out, size_t *len, McErr *err);
// Write bytes to path via a temp file and rename.
int   ds_write_file(const char *path, const void *bytes, size_t len, McErr *err);
// a + "/" + b into a new string (b absolute: a copy of b).
char *ds_join(const char *a, const char *b);
int   ds_is_dir(const char *path);
int   ds_is_file(const char *path);
// mkdir -p.  Returns 0 or -1 with err set.
int   ds_mkdirs(const char *path, McErr *err);
// Hashes: SHA-1 and SHA-256 of bytes, as lowercase hex.
void  ds_sha1_hex(const void *data, size_t n, char hex[41]);
void  ds_sha256_hex(const void *data, size_t n, char hex[65]);
// SHA-256 over the dataset's items (rel, label, split per line) and class
// names: identifies the source a few-shot manifest was drawn from.
void  ds_fingerprint(const Dataset *ds, char hex[65]);

#endif
