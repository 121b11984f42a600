"""Small datasets written by the tests themselves."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

VOC_XML = """<annotation>
  <filename>{image_id}.jpg</filename>
  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>
  {objects}
</annotation>"""
VOC_OBJECT = """<object><name>{name}</name><difficult>{difficult}</difficult>
  <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"""


def write_image(path, width, height, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(path)


def write_voc(root, annotations, split="trainval"):
    """annotations: {image_id: (width, height, [(name, difficult, x1, y1, x2, y2) 1-based])}."""
    root = Path(root)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for image_id, (width, height, objects) in annotations.items():
        xml_objects = "".join(
            VOC_OBJECT.format(name=n, difficult=d, x1=x1, y1=y1, x2=x2, y2=y2)
            for n, d, x1, y1, x2, y2 in objects)
        (root / "Annotations" / f"{image_id}.xml").write_text(
            VOC_XML.format(image_id=image_id, width=width, height=height, objects=xml_objects))
        write_image(root / "JPEGImages" / f"{image_id}.jpg", width, height)
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(annotations) + "\n")
    return root


def write_coco(root):
    """Two images, categories with non-contiguous ids, one crowd region."""
    root = Path(root)
    write_image(root / "images" / "a.jpg", 64, 48)
    write_image(root / "images" / "b.jpg", 32, 32)
    data = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 64, "height": 48},
                   {"id": 3, "file_name": "b.jpg", "width": 32, "height": 32}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 18, "bbox": [10, 5, 20, 10], "area": 200,
             "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [50, 40, 30, 30], "area": 100,
             "iscrowd": 0},  # runs off the image: clipped to x2 = 63, y2 = 47
            {"id": 3, "image_id": 7, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100,
             "iscrowd": 1},
        ],
    }
    path = root / "instances.json"
    path.write_text(json.dumps(data))
    return path
