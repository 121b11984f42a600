"""Peak memory of the image paths on a 12000 x 12000 JPEG (issue 33).

Each step runs in a fresh Python process and reports its resident-set high-water
mark (``VmHWM`` of /proc/self/status: ``getrusage``'s ``ru_maxrss`` would carry the
parent's peak across fork and exec), so no step inherits another's memory: the imports
alone; a decode refused at the default limit (header only); the full decode that
detection, evaluation and training do with the limit raised; and selective-search
proposals with the limit raised (a 1/8-size JPEG decode, the search at 1000 px). For
scale, the search at full resolution (the behaviour before the cap) on a 1600 x 1200
JPEG: its bytes per pixel, times 144 million pixels, is what the 12000 x 12000 image
would have needed.

    python benchmarks/huge_image_memory.py --output docs/benchmarks.md
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SECTION = "huge_image_memory"
HUGE = 12000  # side of the square test image
OLD_PATH = (1600, 1200)  # the image searched at full resolution, for the old behaviour
STEPS = {
    "imports": "Python, NumPy, OpenCV, keras_frcnn.data.images and proposals imported",
    "refused": "read_image_bgr at the default limit: refused from the header",
    "decode": "read_image_bgr with the limit raised: full BGR decode (detect, evaluate, train)",
    "proposals": "compute_selective_search with the limit raised (fast mode, 1000 px)",
    "old_path": "selective search at full resolution, 1600 x 1200 (the old behaviour)",
}


def write_picture(path, width, height):
    """A smooth picture with shapes and mild noise (a JPEG of a realistic size)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = np.linspace(40, 200, width, dtype=np.uint8)[None, :, None]
    for _ in range(60):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        cv2.circle(image, centre, int(rng.integers(width // 60, width // 8)), colour, -1)
    for row in range(0, height, 1000):  # in bands: a full-size noise array would double it
        band = image[row:row + 1000]
        band[:] = np.clip(band + rng.integers(-8, 9, band.shape), 0, 255)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])


def run_step(step, folder):
    """Runs in the fresh process; prints {"peak_mb", "seconds"}."""
    from keras_frcnn.data import images
    from keras_frcnn.data.records import DatasetError
    from keras_frcnn.proposals import selective_search

    huge, small = folder / "huge.jpg", folder / "old_path.jpg"
    start = time.perf_counter()
    if step == "refused":
        try:
            images.read_image_bgr(huge)
            raise SystemExit("error: the default limit accepted a 144-megapixel image")
        except DatasetError:
            pass
    elif step == "decode":
        images.read_image_bgr(huge, max_pixels=0)
    elif step == "proposals":
        selective_search.compute_selective_search([huge], folder / "cache", workers=0,
                                                  progress=False, max_pixels=0)
    elif step == "old_path":
        selective_search.selective_search(images.read_image_bgr(small), max_size=max(OLD_PATH))
    seconds = time.perf_counter() - start
    status = Path("/proc/self/status").read_text()
    peak_mb = int(re.search(r"VmHWM:\s*(\d+) kB", status).group(1)) / 1024
    print(json.dumps({"peak_mb": peak_mb, "seconds": seconds}))


def measure(step, folder):
    result = subprocess.run([sys.executable, __file__, "--step", step, "--folder", str(folder)],
                            capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"error: step {step} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", help="Markdown file whose section to rewrite")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        return run_step(args.step, args.folder)

    import report  # the parent only: it loads TensorFlow for the machine description

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_picture(folder / "huge.jpg", HUGE, HUGE)
        write_picture(folder / "old_path.jpg", *OLD_PATH)
        megabytes = (folder / "huge.jpg").stat().st_size / 1e6
        results = {step: measure(step, folder) for step in STEPS}
    base = results["imports"]["peak_mb"]
    per_pixel = (results["old_path"]["peak_mb"] - base) * 2 ** 20 / (OLD_PATH[0] * OLD_PATH[1])
    lines = [
        "## Memory of huge images",
        "",
        f"Machine: {report.machine_description()}. A {HUGE} x {HUGE} JPEG ({megabytes:.0f} MB, "
        f"{HUGE * HUGE / 1e6:.0f} megapixels); peak resident memory (`VmHWM`) of one fresh "
        "process per step (`python benchmarks/huge_image_memory.py --output "
        "docs/benchmarks.md`).",
        "",
        "| step | peak (MB) | above imports (MB) | time (s) |",
        "|---|---:|---:|---:|",
    ]
    for step, what in STEPS.items():
        peak, seconds = results[step]["peak_mb"], results[step]["seconds"]
        lines.append(f"| {what} | {peak:.0f} | {peak - base:.0f} | {seconds:.1f} |")
    lines += [
        "",
        f"Selective search at full resolution costs {per_pixel:.0f} bytes a pixel here: "
        f"{per_pixel * HUGE * HUGE / 2 ** 30:.0f} GB for the {HUGE} x {HUGE} image, where "
        "issue 33 saw bin/detect.py reach 21 GB before the cap.",
    ]
    report.publish(SECTION, lines, args.output)


if __name__ == "__main__":
    main()
