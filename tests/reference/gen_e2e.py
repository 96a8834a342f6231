"""gen_e2e.py - end-to-end reference for `mclip embed --image` and `mclip zeroshot`.

Builds a reduced MobileCLIP2-S0-like model through open_clip's own
CustomTextCLIP (vision_cfg: the timm fastvit_mci0 trunk with fewer blocks
and narrower stages, image size 64, as tests/reference/gen_image.py builds
it; text_cfg: the S0 text tower at width 128, 2 heads, 2 layers, full
vocabulary, bidirectional, as gen_text.py builds it), redraws its weights
(large matrices as detweights recipes, see detweights.py; BN statistics
measured on the test images and perturbed), and runs the whole reference
pipeline in float64 on a few real image files:

    open_clip.transform.image_transform(64, is_train=False, mean=(0, 0, 0),
        std=(1, 1, 1), interpolation="bilinear")     (S0's preprocessing)
    -> encode_image -> normalize;  tokenizer -> encode_text -> normalize;
    probs = softmax(exp(logit_scale) * img @ txt^T) over the classes.

Images: PNGs (RGB, RGBA, grayscale, palette; odd sizes, up- and
down-scaled) and JPEGs (4:2:0 colour, grayscale, 4:2:2) from
tests/fixtures/images/, plus tests/fixtures/e2e_scene.png (131 x 97 RGB,
drawn here, so that a PNG is also downscaled).

Fixture tests/fixtures/e2e_model.safetensors (with the recipes expanded, a
loadable checkpoint; tests/test_e2e.c):
  visual.*, text.*       every small tensor under its open_clip name
  logit_scale            0-d
  ref.input_u8           U8 [N, 3, 64, 64] the open_clip preprocessed input x 255
                         (exact integers: mean 0, std 1)
  ref.image_embeds       [N, E] normalize(encode_image(x))
  ref.image_embeds_raw   [N, E] encode_image(x)
  ref.image_pooled       [N, C] trunk features before head.fc
  ref.text_embeds        [K, E] the class prompts, normalized
  ref.probs              [N, K] with the template "a photo of a {}."
  ref.probs_template2    [N, K] with TEMPLATE2
  ref.paper_embeds       [P, E] PAPER_IMAGES preprocessed in the paper's order
                         (convert("RGB") first, then the same transform)
  metadata: detweights, image_config (reduced trunk + preprocessing, read by
  the mclip loader), text_causal, images (JSON list of paths relative to the
  project root), classes, template2, paper_images, fp32_vs_fp64.

Regenerate (the fixture is about 230 kB, e2e_scene.png 22 kB):

    MCLIP_REFENV=/work/refenv /usr/bin/python3 tests/reference/gen_e2e.py
"""
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refcommon  # noqa: E402
import gen_image  # noqa: E402  (sets up torch + open_clip with the shims)
import gen_text  # noqa: E402
from detweights import Recipes  # noqa: E402

torch, open_clip = gen_image.torch, gen_image.open_clip
from PIL import Image, ImageDraw  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SEED = 4321
SIZE, EMBED = 64, 32
TRUNK = ("fastvit_mci0", dict(layers=(1, 1, 2, 2), embed_dims=(16, 32, 64, 128)))
TEXT_CFG = dict(context_length=77, vocab_size=49408, width=128, heads=2, layers=2,
                no_causal_mask=True)
MEAN, STD, INTERP = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bilinear"
# ln 20: with E = 32 random towers the cosines spread over about +-0.3, so a
# scale of 20 keeps the class probabilities away from 0 and 1 (ln 100 would
# make most of them saturate and hide errors).
LOGIT_SCALE = math.log(20.0)

IMAGES = [
    "tests/fixtures/images/rgb8.png",        # 37 x 53 RGB, upscaled
    "tests/fixtures/images/rgba8.png",       # 31 x 22 RGBA (premultiplied resize)
    "tests/fixtures/images/gray8.png",       # 29 x 23 L
    "tests/fixtures/images/palette4.png",    # 17 x 13 P (NEAREST resize)
    "tests/fixtures/e2e_scene.png",          # 131 x 97 RGB, downscaled
    "tests/fixtures/images/photo420.jpg",    # 160 x 120 4:2:0
    "tests/fixtures/images/gray.jpg",        # 45 x 31 gray JPEG
    "tests/fixtures/images/q75_422.jpg",     # 64 x 48 4:2:2
]
PAPER_IMAGES = ["tests/fixtures/images/rgba8.png", "tests/fixtures/images/palette4.png"]
CLASSES = ["dog", "cat", "golden retriever", "airplane", "crème brûlée", "sunflower",
           "red sports car"]
TEMPLATE = "a photo of a {}."
TEMPLATE2 = "a blurry drawing of the {}!"


def draw_scene(path):
    """A 131 x 97 picture: sky gradient, sun, hills, a house, mild noise."""
    w, h = 131, 97
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    img[..., 0] = 90 + 80 * yy / h
    img[..., 1] = 140 + 60 * yy / h
    img[..., 2] = 230 - 40 * yy / h
    im = Image.fromarray(img.astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.ellipse([92, 8, 118, 34], fill=(250, 220, 60))
    d.polygon([(0, 70), (40, 48), (85, 66), (131, 52), (131, 97), (0, 97)], fill=(60, 140, 50))
    d.rectangle([30, 55, 58, 80], fill=(180, 60, 40))
    d.polygon([(27, 56), (44, 40), (61, 56)], fill=(110, 40, 30))
    d.rectangle([40, 66, 47, 80], fill=(70, 40, 20))
    a = np.asarray(im).astype(np.int16)
    noise = np.random.default_rng(SEED).integers(-6, 7, a.shape)
    Image.fromarray(np.clip(a + noise, 0, 255).astype(np.uint8)).save(path, optimize=True)


def build_model():
    vision_cfg = dict(timm_model_name=TRUNK[0], timm_model_pretrained=False, timm_pool="avg",
                      timm_proj=None, image_size=SIZE, timm_model_kwargs=dict(TRUNK[1]))
    torch.manual_seed(0)
    model = open_clip.model.CustomTextCLIP(EMBED, vision_cfg, TEXT_CFG)
    return model.eval()


def preprocess(paths, paper=False):
    tf = open_clip.transform.image_transform(SIZE, is_train=False, mean=MEAN, std=STD,
                                             interpolation=INTERP)
    out = []
    for p in paths:
        im = Image.open(os.path.join(ROOT, p))
        if paper:
            im = im.convert("RGB")
        out.append(tf(im))
    return torch.stack(out)


def assign(model, rec, x_calib):
    """Image tower as gen_image.py, text tower as gen_text.py, one recipe list."""
    gen_image.assign_weights(model.visual, rec, SEED)
    gen_text.redraw(torch, model.text, rec)
    with torch.no_grad():
        model.logit_scale.fill_(LOGIT_SCALE)
    model.double()
    crng = np.random.default_rng(SEED + 7)
    calib = [x_calib.double(),
             torch.from_numpy(crng.uniform(0, 1, (4, 3, SIZE, SIZE)))]
    gen_image.calibrate_bn(model.visual, calib, SEED)


def forward(model, x, tokens):
    """float64 image and text embeddings, probabilities, pooled features."""
    pooled = {}
    hook = model.visual.trunk.head.fc.register_forward_pre_hook(
        lambda m, i: pooled.__setitem__("p", i[0].detach().clone()))
    with torch.no_grad():
        raw = model.encode_image(x)
        hook.remove()
        img = torch.nn.functional.normalize(raw, dim=-1)
        txt = {k: torch.nn.functional.normalize(model.encode_text(t), dim=-1)
               for k, t in tokens.items()}
        probs = {k: (model.logit_scale.exp() * img @ t.T).softmax(-1) for k, t in txt.items()}
    return raw, img, pooled["p"], txt, probs


def absmax_rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def main():
    scene = os.path.join(ROOT, "tests", "fixtures", "e2e_scene.png")
    if not os.path.exists(scene):
        draw_scene(scene)
    model = build_model()
    rec = Recipes(SEED)
    x = preprocess(IMAGES)                       # float32, exact k / 255
    x_paper = preprocess(PAPER_IMAGES, paper=True)
    assign(model, rec, x)

    tok = open_clip.get_tokenizer("MobileCLIP2-S0")
    tokens = {"t1": tok([TEMPLATE.format(c) for c in CLASSES]),
              "t2": tok([TEMPLATE2.format(c) for c in CLASSES])}
    raw, img, pooled, txt, probs = forward(model, x.double(), tokens)
    with torch.no_grad():
        paper = torch.nn.functional.normalize(model.encode_image(x_paper.double()), dim=-1)

    # For information: the float32 model against float64.
    m32 = build_model()
    m32.load_state_dict({k: v.float() if v.is_floating_point() else v
                         for k, v in model.state_dict().items()})
    raw32, _, _, _, probs32 = forward(m32, x, tokens)
    d_emb = absmax_rel(raw32.numpy(), raw.numpy())
    d_prob = float(np.abs(probs32["t1"].numpy() - probs["t1"].numpy()).max())

    # Fixture: small tensors, references, recipes, metadata.
    tensors = {}
    for k, v in model.state_dict().items():
        if gen_image.is_large(k, tuple(v.shape)) or (k.startswith("text.") and v.ndim >= 2):
            continue
        a = v.detach().numpy()
        tensors[k] = a.astype(np.float32) if a.dtype == np.float64 else a
    u8 = np.rint(x.numpy() * 255.0)
    assert np.abs(u8 / 255.0 - x.numpy()).max() < 1e-6
    tensors["ref.input_u8"] = u8.astype(np.uint8)
    tensors["ref.image_embeds"] = img.numpy().astype(np.float32)
    tensors["ref.image_embeds_raw"] = raw.numpy().astype(np.float32)
    tensors["ref.image_pooled"] = pooled.numpy().astype(np.float32)
    tensors["ref.text_embeds"] = txt["t1"].numpy().astype(np.float32)
    tensors["ref.probs"] = probs["t1"].numpy().astype(np.float32)
    tensors["ref.probs_template2"] = probs["t2"].numpy().astype(np.float32)
    tensors["ref.paper_embeds"] = paper.numpy().astype(np.float32)

    cfg = gen_image.fastvit_config(model.visual.trunk, SIZE, EMBED, TRUNK[0])
    cfg.update(interp=INTERP, mean=list(MEAN), std=list(STD))
    meta = rec.metadata()
    meta.update({
        "image_config": json.dumps(cfg),
        "text_causal": "0",
        "images": json.dumps(IMAGES),
        "paper_images": json.dumps(PAPER_IMAGES),
        "classes": json.dumps(CLASSES, ensure_ascii=False),
        "template2": TEMPLATE2,
        "reference": "open_clip %s CustomTextCLIP + timm %s, float64" %
                     (open_clip.__version__, gen_image.timm.__version__),
        "fp32_vs_fp64": "image_embeds_raw %.2e (of absmax), probs %.2e (absolute)" %
                        (d_emb, d_prob),
    })
    path = os.path.join(ROOT, "tests", "fixtures", "e2e_model.safetensors")
    refcommon.save_safetensors(path, tensors, meta)

    p = probs["t1"].numpy()
    print("%s: %d images, E %d, %d classes, %d bytes; fp32 vs fp64: embeds %.1e probs %.1e"
          % (path, len(IMAGES), EMBED, len(CLASSES), os.path.getsize(path), d_emb, d_prob))
    cos = (img @ txt["t1"].T).numpy()
    print("cos range %.3f .. %.3f; top-1 prob per image: %s" %
          (cos.min(), cos.max(), " ".join("%.3f" % v for v in p.max(1))))
    print("paper vs openclip order (rgba8, palette4): %.3e %.3e" %
          tuple(absmax_rel(paper.numpy()[i], img.numpy()[j]) for i, j in ((0, 1), (1, 3))))
    print("pooled std %.3f absmax %.2f; raw embed std %.3f" %
          (pooled.std().item(), pooled.abs().max().item(), raw.std().item()))


if __name__ == "__main__":
    main()
