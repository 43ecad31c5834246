#!/usr/bin/env python3
"""Makes the control-image reference data in this folder with Pillow and OpenCV's Python module (Debian
python3-pil 9.4, python3-opencv 4.6): what diffusers' control-image processor and the reference demo's
cv2.Canny produce, for tests/io/test_image_file.cpp and the cli.canny.* tests.

  src_*.png            source images (RGB), made here from a fixed seed
  resize_<src>_<w>x<h>.png   Image.resize((w, h), Image.LANCZOS) of the source
  photo.jpg / photo_decoded.png, grey.jpg / grey_decoded.png   JPEGs and Pillow's RGB decode of them
  canny_<src>.png      cv2.Canny(np.array(image), 100, 200) (one channel), the reference demo's edges
Run: /usr/bin/python3 tests/data/control/make_references.py
"""
import os

import cv2
import numpy as np
from PIL import Image, ImageDraw

here = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(2023)


def save(img, name):
    img.save(os.path.join(here, name))


def shapes(w, h):
    img = Image.new("RGB", (w, h), (20, 40, 90))
    d = ImageDraw.Draw(img)
    d.ellipse([w * 0.1, h * 0.15, w * 0.55, h * 0.7], fill=(230, 40, 30))
    d.rectangle([w * 0.5, h * 0.4, w * 0.9, h * 0.9], outline=(250, 250, 250), width=2)
    d.line([0, h - 1, w - 1, 0], fill=(30, 200, 60), width=3)
    arr = np.asarray(img).astype(np.int16) + rng.integers(-12, 13, size=(h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def gradient(w, h):
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // max(w + h - 2, 1)], axis=2)
    return Image.fromarray(arr.astype(np.uint8))


def noise(w, h):
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8))


sources = {"shapes": shapes(96, 72), "gradient": gradient(61, 47), "noise": noise(37, 29), "odd": shapes(123, 77)}
for name, img in sources.items():
    save(img, f"src_{name}.png")
sizes = {"shapes": [(32, 24), (128, 96), (40, 64)], "gradient": [(16, 16), (100, 30)], "noise": [(64, 64), (12, 9)],
         "odd": [(120, 72), (256, 160)]}
for name, lst in sizes.items():
    for w, h in lst:
        save(sources[name].resize((w, h), Image.LANCZOS), f"resize_{name}_{w}x{h}.png")
for name, img in sources.items():
    edges = cv2.Canny(np.array(img), 100, 200)
    Image.fromarray(edges).save(os.path.join(here, f"canny_{name}.png"))

photo = shapes(80, 60)
photo.save(os.path.join(here, "photo.jpg"), quality=90)
save(Image.open(os.path.join(here, "photo.jpg")).convert("RGB"), "photo_decoded.png")
photo.convert("L").save(os.path.join(here, "grey.jpg"), quality=85)
save(Image.open(os.path.join(here, "grey.jpg")).convert("RGB"), "grey_decoded.png")
