"""Regenerate the committed sample datasets: `shapes/` and its domain-shifted twin `shapes_shifted/`.

Run `python sample_data/make_sample_data.py` (no arguments). It deletes and rewrites both folders next to this
file, byte-for-byte identical on every run: every image has its own seeded numpy RNG, drawing is done by PIL
alone, and JPEGs are saved with fixed settings and no metadata.

- `shapes`: one filled shape (random size, position, rotation, colour) on a cluttered background: a colour
  gradient, smooth blotches, pixel noise and a few distractor blobs and strokes. The clutter is there on purpose:
  a small CNN trained from scratch on ~190 of these images struggles, while ImageNet features cope well.
- `shapes_shifted`: the same classes drawn as thick dark outlines on light, textured paper with pencil marks,
  nearly grayscale. A model trained on `shapes` should do worse here, but well above chance.

Two more layouts of the `shapes` images, for multi-task learning, are written only when asked (they are not
committed; tests write them into a temporary folder):

- `--nested`: `shapes_nested/<coarse>/<fine>/`, coarse "convex" (circle, square, triangle) or "concave" (star,
  cross), fine the shape. Convexity is a real geometric property the shapes share or not (a star and a cross have
  corners pointing inwards), and the split is nearly balanced (3 shapes to 2), unlike curved versus straight (1 to
  4), which the health report would flag as imbalanced.
- `--two-labels`: `shapes_two_labels/images/` plus `labels.csv` with two label columns, `label` (the shape) and
  `group` (convex / concave), the group left blank for every fourth image of each shape (not the same
  quarter for every shape, so the validation images too have a few blanks).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "star", "cross")
IMAGES_PER_CLASS = 48
SIZE = 128
SUPERSAMPLE = 2  # draw at 2x then downsample: anti-aliased edges without relying on PIL's per-primitive AA
JPEG_QUALITY = 88
SHAPES_SEED = 2024
SHIFTED_SEED = 7331
GROUPS = {"circle": "convex", "square": "convex", "triangle": "convex", "star": "concave", "cross": "concave"}
"""The coarse class of each shape in the multi-task layouts: convex or not (inward corners)."""
BLANK_GROUP_EVERY = 4  # in shapes_two_labels, every fourth image of each shape has no group label

Canvas = np.ndarray  # float32 array (H, W, 3) with values in 0..255, at SUPERSAMPLE resolution


def unit_outline(name: str) -> np.ndarray:
    """Vertices (N, 2) of a class's shape, centred on the origin, circumscribed radius 1."""
    if name == "circle":
        angles = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if name in ("square", "triangle"):
        corners = 4 if name == "square" else 3
        angles = np.linspace(0, 2 * np.pi, corners, endpoint=False) - np.pi / 2
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if name == "star":
        angles = np.linspace(0, 2 * np.pi, 10, endpoint=False) - np.pi / 2
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    if name == "cross":
        arm, half = 1.0, 0.32
        quarter = np.array([[half, arm], [-half, arm], [-half, half]])
        turns = [
            quarter @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) for a in np.arange(4) * np.pi / 2
        ]
        points = np.concatenate(turns)
        return points / np.hypot(arm, half)
    raise ValueError(f"unknown shape class {name!r}")


def place_shape(name: str, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Outline vertices in canvas pixels with random size (25-70% of the image), rotation and position.

    Returns the vertices and the shape's diameter in canvas pixels. The centre keeps at least 85% of the
    radius inside the frame, so a shape is fully or mostly visible.
    """
    canvas = SIZE * SUPERSAMPLE
    diameter = rng.uniform(0.25, 0.70) * canvas
    radius = diameter / 2
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    stretch = np.array([rng.uniform(0.9, 1.1), 1.0])  # slight aspect jitter so no two circles are identical
    centre = rng.uniform(0.85 * radius, canvas - 0.85 * radius, size=2)
    return (unit_outline(name) * stretch * radius) @ rotation + centre, diameter


def polygon_mask(points: np.ndarray) -> np.ndarray:
    """Binary (0/1 float) mask of a filled polygon on the supersampled canvas."""
    canvas = SIZE * SUPERSAMPLE
    mask = Image.new("L", (canvas, canvas), 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in points.round(2)], fill=255)
    return np.asarray(mask, dtype=np.float32) / 255


def outline_mask(points: np.ndarray, thickness: int) -> np.ndarray:
    """Mask of a thick outline that stays inside the shape, so outlined and filled shapes share their silhouette.

    Each edge becomes a filled band twice as wide as wanted, with a round cap at every corner, and the result is
    clipped to the filled polygon. Filled primitives only: PIL's wide polylines leave hairline gaps at joints.
    """
    canvas = SIZE * SUPERSAMPLE
    stroke = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(stroke)
    for start, end in zip(points, np.roll(points, -1, axis=0), strict=True):
        normal = np.array([start[1] - end[1], end[0] - start[0]])
        normal *= thickness / np.linalg.norm(normal)
        draw.polygon([tuple(p) for p in (start + normal, end + normal, end - normal, start - normal)], fill=255)
        draw.ellipse([*(start - thickness), *(start + thickness)], fill=255)
    return np.asarray(stroke, dtype=np.float32) / 255 * polygon_mask(points)


def smooth_field(rng: np.random.Generator, cells: tuple[int, int], channels: int) -> np.ndarray:
    """Low-frequency noise (H, W, channels), roughly unit variance: a coarse random grid upsampled bicubically."""
    canvas = SIZE * SUPERSAMPLE
    grid = rng.normal(size=(channels, *cells)).astype(np.float32)
    layers = [np.asarray(Image.fromarray(g).resize((canvas, canvas), Image.Resampling.BICUBIC)) for g in grid]
    return np.stack(layers, axis=-1)


def gradient(rng: np.random.Generator, start: np.ndarray, end: np.ndarray) -> Canvas:
    """Linear blend from `start` to `end` colour along a random direction."""
    canvas = SIZE * SUPERSAMPLE
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:canvas, 0:canvas].astype(np.float32) / canvas - 0.5
    t = xs * np.cos(angle) + ys * np.sin(angle)
    t = (t - t.min()) / (t.max() - t.min())
    return start * (1 - t[..., None]) + end * t[..., None]


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated RGB colour, so shapes and clutter alike are vivid rather than muddy."""
    hue = rng.uniform(0, 6)
    saturation, value = rng.uniform(0.5, 1.0), rng.uniform(0.35, 1.0)
    ramp = np.clip(np.abs((hue + np.array([0, 4, 2])) % 6 - 3) - 1, 0, 1)  # HSV -> RGB hue ramp
    return (value * (1 - saturation + saturation * ramp) * 255).astype(np.float32)


def distinct_colour(rng: np.random.Generator, avoid: list[np.ndarray], min_distance: float) -> np.ndarray:
    """A random colour at least `min_distance` (RGB) from every colour in `avoid`; falls back to the best try."""
    best, best_distance = None, -1.0
    for _ in range(40):
        colour = random_colour(rng)
        distance = min(float(np.linalg.norm(colour - a)) for a in avoid)
        if distance >= min_distance:
            return colour
        if distance > best_distance:
            best, best_distance = colour, distance
    return best


def composite(canvas: Canvas, mask: np.ndarray, colour: np.ndarray | Canvas) -> Canvas:
    """Paint `colour` over `canvas` wherever `mask` (0..1) is set."""
    alpha = mask[..., None]
    return canvas * (1 - alpha) + colour * alpha


def draw_blob(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    centre: np.ndarray,
    reach: float,
    width: int,
    fill: tuple[int, ...],
) -> None:
    rx, ry = reach * rng.uniform(0.3, 0.7, size=2)
    x, y = centre
    draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=fill)


def draw_shard(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    centre: np.ndarray,
    reach: float,
    width: int,
    fill: tuple[int, ...],
) -> None:
    # An irregular 3-5 corner polygon: angular clutter, so "has corners" alone does not give a class away.
    corners = int(rng.integers(3, 6))
    angles = np.sort(rng.uniform(0, 2 * np.pi, size=corners))
    radii = reach * rng.uniform(0.3, 0.8, size=corners)
    draw.polygon([tuple(p) for p in centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)], fill=fill)


def draw_stroke(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    centre: np.ndarray,
    reach: float,
    width: int,
    fill: tuple[int, ...],
) -> None:
    angle = rng.uniform(0, np.pi)
    offset = reach * np.array([np.cos(angle), np.sin(angle)])
    draw.line([tuple(centre - offset), tuple(centre + offset)], fill=fill, width=width)


def draw_arc(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    centre: np.ndarray,
    reach: float,
    width: int,
    fill: tuple[int, ...],
) -> None:
    start, r = rng.uniform(0, 360), reach * 0.6
    x, y = centre
    draw.arc([x - r, y - r, x + r, y + r], start, start + rng.uniform(60, 200), fill=fill, width=width)


def draw_scribble(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    centre: np.ndarray,
    reach: float,
    width: int,
    fill: tuple[int, ...],
) -> None:
    # A short jagged polyline, like a stray pencil mark.
    path = np.cumsum(rng.normal(scale=reach * 0.5, size=(int(rng.integers(4, 8)), 2)), axis=0) + centre
    draw.line([tuple(p) for p in path], fill=fill, width=width, joint="curve")


MARKS = {"blob": draw_blob, "shard": draw_shard, "stroke": draw_stroke, "arc": draw_arc, "scribble": draw_scribble}


def draw_marks(
    canvas: Canvas, rng: np.random.Generator, colours: list[np.ndarray], kinds: tuple[str, ...], scale: float
) -> Canvas:
    """Draw one small mark of a random kind (a key of MARKS) per colour; `scale` multiplies their size."""
    image = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    extent = SIZE * SUPERSAMPLE
    for colour in colours:
        kind = kinds[rng.integers(len(kinds))]
        centre = rng.uniform(0, extent, size=2)
        reach = rng.uniform(0.05, 0.16) * extent * scale
        width = max(1, int(rng.uniform(0.012, 0.03) * extent * scale))
        MARKS[kind](draw, rng, centre, reach, width, tuple(int(c) for c in colour))
    return np.asarray(image, dtype=np.float32)


def finish(canvas: Canvas, rng: np.random.Generator, noise_sigma: float) -> Image.Image:
    """Downsample to SIZE, add per-pixel noise at final resolution and quantise to an 8-bit RGB image."""
    small = Image.fromarray(canvas.clip(0, 255).astype(np.uint8)).resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float32) + rng.normal(scale=noise_sigma, size=(SIZE, SIZE, 3))
    return Image.fromarray(pixels.clip(0, 255).round().astype(np.uint8))


def render_cluttered(name: str, rng: np.random.Generator) -> Image.Image:
    """`shapes` style: a filled, vivid shape on a busy colourful background."""
    background = gradient(rng, random_colour(rng), random_colour(rng))
    background += 35 * smooth_field(rng, (5, 5), 3)
    points, _ = place_shape(name, rng)
    mask = polygon_mask(points)
    under_shape = background[mask > 0.5].mean(axis=0)
    shape_colour = distinct_colour(rng, [under_shape], min_distance=110)
    # Distractors are drawn beneath the shape, in colours unlike it, so they clutter without hiding the outline.
    clutter = [distinct_colour(rng, [shape_colour], min_distance=80) for _ in range(rng.integers(2, 5))]
    canvas = draw_marks(background, rng, clutter, ("blob", "shard", "stroke", "arc"), scale=1.0)
    canvas = composite(canvas, mask, shape_colour)
    # Uneven lighting over everything, so the shape is not one flat colour a network could key on.
    canvas *= 1 + 0.18 * smooth_field(rng, (3, 3), 1)
    return finish(canvas, rng, noise_sigma=rng.uniform(6, 11))


def paper(rng: np.random.Generator) -> Canvas:
    """Light, warm, slightly blotchy paper with horizontal fibre streaks."""
    base = rng.uniform(212, 242) + np.array([rng.uniform(0, 10), rng.uniform(0, 5), -rng.uniform(0, 14)])
    blotches = 9 * smooth_field(rng, (4, 4), 1)
    fibres = 2.5 * smooth_field(rng, (128, 10), 1)  # many rows, few columns: streaks that run left to right
    return (base + blotches + fibres).astype(np.float32)


def render_sketch(name: str, rng: np.random.Generator) -> Image.Image:
    """`shapes_shifted` style: a thick dark ink outline on paper, with faint pencil marks, almost grayscale."""
    canvas = paper(rng)
    pencil = [np.full(3, rng.uniform(95, 175), dtype=np.float32) for _ in range(rng.integers(2, 5))]
    canvas = draw_marks(canvas, rng, pencil, ("stroke", "arc", "scribble"), scale=0.7)
    points, diameter = place_shape(name, rng)
    thickness = int(np.clip(rng.uniform(0.06, 0.11) * diameter, 3 * SUPERSAMPLE, 9 * SUPERSAMPLE))
    ink_palette = np.array([[25, 25, 30], [55, 55, 60], [30, 40, 85], [80, 50, 30]], dtype=np.float32)
    ink = ink_palette[rng.integers(len(ink_palette))] + rng.uniform(-10, 10)
    # Marker ink is never perfectly even: modulate its opacity a little.
    opacity = np.clip(0.9 + 0.08 * smooth_field(rng, (8, 8), 1)[..., 0], 0.7, 1.0)
    canvas = composite(canvas, outline_mask(points, thickness) * opacity, ink)
    gray = canvas.mean(axis=-1, keepdims=True)
    canvas = gray + rng.uniform(0.2, 0.5) * (canvas - gray)  # mostly desaturated, a hint of tint remains
    return finish(canvas, rng, noise_sigma=rng.uniform(3, 5))


def save_jpeg(image: Image.Image, path: Path) -> None:
    """Fixed quality and no optimize/progressive/EXIF: identical bytes on every run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False, subsampling="4:2:0")


def shape_images(render: Callable[[str, np.random.Generator], Image.Image], seed: int, images_per_class: int
                 ) -> Iterator[tuple[str, str, Image.Image]]:
    """(class, number within the class, file name, image) for every image of a dataset, in a fixed order."""
    for class_index, name in enumerate(CLASSES):
        for i in range(images_per_class):
            # One RNG per image: changing IMAGES_PER_CLASS leaves the images that remain unchanged.
            rng = np.random.default_rng([seed, class_index, i])
            yield name, i, f"{name}_{i:03d}.jpg", render(name, rng)


def write_dataset(folder: Path, render: Callable[[str, np.random.Generator], Image.Image], seed: int) -> None:
    """Delete `folder`, then write IMAGES_PER_CLASS images per class into `folder/<class>/<class>_NNN.jpg`."""
    shutil.rmtree(folder, ignore_errors=True)
    for name, _, file_name, image in shape_images(render, seed, IMAGES_PER_CLASS):
        save_jpeg(image, folder / name / file_name)


def write_nested(folder: Path, images_per_class: int = IMAGES_PER_CLASS) -> None:
    """Delete `folder`, then write the `shapes` images (the same bytes) as `folder/<coarse>/<shape>/<file>`, coarse
    being the shape's GROUPS entry: two tasks in nested folders."""
    shutil.rmtree(folder, ignore_errors=True)
    for name, _, file_name, image in shape_images(render_cluttered, SHAPES_SEED, images_per_class):
        save_jpeg(image, folder / GROUPS[name] / name / file_name)


def write_two_labels(folder: Path, images_per_class: int = IMAGES_PER_CLASS) -> None:
    """Delete `folder`, then write the `shapes` images into `folder/images/` and `folder/labels.csv` with columns
    filename, label (the shape) and group (its GROUPS entry, blank for every BLANK_GROUP_EVERY-th image of each
    shape): two tasks in one label file, the second not known for every image."""
    shutil.rmtree(folder, ignore_errors=True)
    rows = ["filename,label,group"]
    for name, number, file_name, image in shape_images(render_cluttered, SHAPES_SEED, images_per_class):
        save_jpeg(image, folder / "images" / file_name)
        blank = (number + CLASSES.index(name)) % BLANK_GROUP_EVERY == BLANK_GROUP_EVERY - 1
        group = "" if blank else GROUPS[name]
        rows.append(f"images/{file_name},{name},{group}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent,
        help="folder to write the datasets into (default: next to this script)",
    )
    parser.add_argument("--nested", action="store_true",
                        help="write only shapes_nested/ (<convex|concave>/<shape>/ folders: two tasks)")
    parser.add_argument("--two-labels", action="store_true",
                        help="write only shapes_two_labels/ (images/ and labels.csv with label and group columns)")
    args = parser.parse_args()
    out = args.out
    if args.nested:
        write_nested(out / "shapes_nested")
        print(f"wrote {len(CLASSES) * IMAGES_PER_CLASS} images under {out / 'shapes_nested'}")
    if args.two_labels:
        write_two_labels(out / "shapes_two_labels")
        print(f"wrote {len(CLASSES) * IMAGES_PER_CLASS} images and labels.csv under {out / 'shapes_two_labels'}")
    if args.nested or args.two_labels:
        return
    write_dataset(out / "shapes", render_cluttered, SHAPES_SEED)
    write_dataset(out / "shapes_shifted", render_sketch, SHIFTED_SEED)
    print(f"wrote {2 * len(CLASSES) * IMAGES_PER_CLASS} images under {out}")


if __name__ == "__main__":
    main()
