"""A photo-like benchmark dataset: JPEGs whose decode cost is like real photos', written deterministically.

The sample data (128 px PNG-like shapes) decodes in well under a millisecond per image, so a loop that decodes every
epoch looks cheaper on it than on a user's photos. These images are 500 x 375 px (a common camera-export size), JPEG
quality 90, with what makes photos costly to decode and compress: smooth lighting gradients, texture at several
scales (noise summed from 4 to 250 px), and shapes of a colour and kind that depend on the class (so the classes are
learnable, and the accuracy columns stay a sanity check). Files come out at 60-120 KB, like photos of that size.

Same arguments, same bytes: the images depend only on (class, index), so a cache folder is written once and reused;
a marker file with the arguments says whether a folder is complete.

    python bench/photo_like.py                     # prints the folder (written on the first call)
    HF_HUB_OFFLINE=1 python bench/bench_train.py --data "$(python bench/photo_like.py)" --repeats 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 500, 375
QUALITY = 90
VERSION = 1  # bump when the images change, so an old cache folder is not taken for the new one
CLASSES = ("disc", "block", "star", "stripes", "ring", "wedge")
DEFAULT_DIR = Path.home() / ".cache" / "workbench-bench"


def _texture(rng: np.random.Generator) -> np.ndarray:
    """H x W x 3 floats in [0, 1]: a lighting gradient plus colour noise summed over scales (coarse to pixel-fine)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * x / WIDTH + np.sin(angle) * y / HEIGHT)[..., None]
    base, tint = rng.uniform(0.2, 0.7, 3), rng.uniform(-0.3, 0.3, 3)
    image = base + ramp * tint
    for cell, amplitude in ((250, 0.18), (60, 0.10), (16, 0.06), (4, 0.04), (1, 0.025)):
        grid = rng.normal(0, 1, (max(2, HEIGHT // cell), max(2, WIDTH // cell), 3)).astype(np.float32)
        layer = np.stack([np.asarray(Image.fromarray(grid[..., c]).resize((WIDTH, HEIGHT), Image.BICUBIC))
                          for c in range(3)], axis=-1)
        image = image + amplitude * layer
    return np.clip(image, 0, 1)


def _draw_subject(draw: ImageDraw.ImageDraw, kind: str, rng: np.random.Generator, colour: tuple[int, ...]) -> None:
    """One object of the class's kind, at a random place and size."""
    cx, cy = rng.uniform(0.3, 0.7) * WIDTH, rng.uniform(0.3, 0.7) * HEIGHT
    r = rng.uniform(0.15, 0.3) * HEIGHT
    box = (cx - r, cy - r, cx + r, cy + r)
    if kind == "disc":
        draw.ellipse(box, fill=colour)
    elif kind == "block":
        draw.rectangle(box, fill=colour)
    elif kind == "ring":
        draw.ellipse(box, outline=colour, width=int(r / 3))
    elif kind == "wedge":
        draw.pieslice(box, rng.uniform(0, 360), rng.uniform(0, 360) + 120, fill=colour)
    elif kind == "stripes":
        for offset in np.linspace(-r, r, 5):
            draw.line((cx - r, cy + offset, cx + r, cy + offset - r / 2), fill=colour, width=int(r / 8))
    else:  # star
        turn = rng.uniform(0, np.pi)
        points = [(cx + (r if i % 2 == 0 else r / 2.5) * np.cos(turn + i * np.pi / 5),
                   cy + (r if i % 2 == 0 else r / 2.5) * np.sin(turn + i * np.pi / 5)) for i in range(10)]
        draw.polygon(points, fill=colour)


def photo_like_image(label: int, index: int, kinds: tuple[str, ...] = CLASSES) -> Image.Image:
    """Image `index` of class `label`: textured background, a few distractor shapes, the class's subject, and the
    slight blur and grain of a camera."""
    rng = np.random.default_rng([VERSION, label, index])
    image = Image.fromarray((_texture(rng) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 6))):  # background clutter, of any kind but the subject's
        x, y, r = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT), rng.uniform(8, 40)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    hue = np.array([[220, 60, 50], [50, 160, 70], [60, 90, 210], [230, 190, 40], [160, 70, 190], [40, 190, 200]])
    colour = np.clip(hue[label % len(hue)] + rng.normal(0, 25, 3), 0, 255)
    _draw_subject(draw, kinds[label], rng, tuple(int(v) for v in colour))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 1.2)))
    grain = rng.normal(0, 5, (HEIGHT, WIDTH, 1))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) + grain, 0, 255).astype(np.uint8))


def photo_like_folder(root: Path = DEFAULT_DIR, images: int = 400, classes: int = 4) -> Path:
    """The folder of `images` photo-like JPEGs in `classes` class subfolders, written under `root` unless a complete
    one is there already. Returns the folder."""
    if not 2 <= classes <= len(CLASSES):
        raise ValueError(f"classes must be between 2 and {len(CLASSES)}, got {classes}")
    folder = root / f"photo_like-v{VERSION}-{images}x{classes}"
    marker = folder / "complete.json"
    settings = {"version": VERSION, "images": images, "classes": classes, "size": [WIDTH, HEIGHT],
                "quality": QUALITY}
    if marker.exists() and json.loads(marker.read_text()) == settings:
        return folder
    for index in range(images):
        label = index % classes
        target = folder / CLASSES[label] / f"{CLASSES[label]}_{index // classes:04d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        photo_like_image(label, index // classes).save(target, quality=QUALITY)
    marker.write_text(json.dumps(settings) + "\n")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_DIR, help="cache folder the dataset is written under")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--classes", type=int, default=4)
    args = parser.parse_args(argv)
    print(photo_like_folder(args.root, args.images, args.classes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
