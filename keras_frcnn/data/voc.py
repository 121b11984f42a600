"""PASCAL VOC annotations: devkit layout or any folder of VOC XML files.

VOC XML boxes are 1-based inclusive; records hold them 0-based (subtract 1).
``difficult`` objects are kept, flagged; whether training uses them is the
RoI database's ``use_difficult`` option (default True: the release trains on them).
Each image's header is read to check that ``<size>`` is the image's size and that the
image is within the pixel limit (data/images.py), so that neither surfaces in training.
An annotation without ``<object>`` is an image with no objects: a valid
negative, kept (as COCO images without annotations are). Evaluation counts its
detections as false positives; training drops it when it offers no background
RoI either (data/sampling.py ``trainable_entries``, the release's filter_roidb).
"""

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from keras_frcnn.boxes import invalid_box_reason
from keras_frcnn.data.images import probe_image
from keras_frcnn.data.records import (
    MAX_IMAGE_PIXELS,
    Dataset,
    DatasetError,
    ImageRecord,
    check_on_error,
    handle_error,
)
from keras_frcnn import files
from keras_frcnn.files import (atomic_write, is_dir, is_file, is_url, join, list_dir, parent,
                               read_bytes, read_text, stem)

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _text(element, path, xml_path):
    node = element.find(path)
    if node is None or node.text is None or not node.text.strip():
        raise DatasetError(f"{xml_path}: missing <{path}>")
    return node.text.strip()


def _number(element, path, xml_path):
    text = _text(element, path, xml_path)
    try:
        return float(text)
    except ValueError:
        raise DatasetError(f"{xml_path}: <{path}> is not a number: {text!r}") from None


def _image_path(xml_root, xml_path, images_dir, image_id):
    """The image file: <filename> in images_dir if present, else <id>.<suffix>."""
    name = xml_root.findtext("filename")
    candidates = ([join(images_dir, name.strip())] if name and name.strip() else []) + [
        join(images_dir, f"{image_id}{suffix}") for suffix in IMAGE_SUFFIXES]
    for candidate in candidates:
        if is_file(candidate):
            return candidate
    raise DatasetError(f"{xml_path}: image not found (looked for "
                       f"{', '.join(str(c) for c in candidates[:2])})")


def parse_voc_xml(xml_path, images_dir, classes=VOC_CLASSES, max_image_pixels=MAX_IMAGE_PIXELS,
                  exif_orientation=True):
    """One VOC XML file -> ImageRecord (0-based boxes). Raises DatasetError naming the file,
    also when the image's header disagrees with <size> or exceeds ``max_image_pixels``
    (data/images.py ``probe_image``; 0: no limit)."""
    xml_path = xml_path if is_url(xml_path) else Path(xml_path)
    try:
        root = ElementTree.fromstring(read_bytes(xml_path))
    except (ElementTree.ParseError, OSError) as err:
        raise DatasetError(f"{xml_path}: cannot read the annotation: {err}") from None
    image_id = stem(xml_path)
    width = int(_number(root, "size/width", xml_path))
    height = int(_number(root, "size/height", xml_path))
    if width <= 0 or height <= 0:
        raise DatasetError(f"{xml_path}: image size {width}x{height} is not positive")
    # Before the boxes: against a wrong <size> their bounds check would mislead.
    image_path = _image_path(root, xml_path, images_dir, image_id)
    probe_image(image_path, max_image_pixels, (width, height), source=xml_path,
                orient=exif_orientation)
    class_index = {name: k + 1 for k, name in enumerate(classes)}
    boxes, labels, difficult = [], [], []
    for obj in root.findall("object"):
        name = _text(obj, "name", xml_path)
        if name not in class_index:
            raise DatasetError(f"{xml_path}: unknown class {name!r}; the class list is "
                               f"{list(classes)}")
        box = [_number(obj, f"bndbox/{k}", xml_path) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]
        reason = invalid_box_reason(box, width, height)
        if reason is not None:
            raise DatasetError(f"{xml_path}: object {len(boxes)} ({name}) box "
                               f"{[v + 1 for v in box]} (1-based) {reason}; fix the "
                               "annotation, or set dataset.on_error=skip to leave the image out")
        boxes.append(box)
        labels.append(class_index[name])
        difficult.append(obj.findtext("difficult", "0").strip() == "1")
    return ImageRecord.create(image_id, image_path, width, height, boxes, labels, difficult)


def xml_ids(annotations_dir):
    """The ids (file names without ``.xml``) of a folder's annotations, sorted."""
    return sorted(n[:-4] for n in list_dir(annotations_dir) if n.endswith(".xml"))


def load_voc_folder(annotations_dir, images_dir, classes=VOC_CLASSES, ids=None, name=None,
                    on_error="raise", max_image_pixels=MAX_IMAGE_PIXELS, exif_orientation=True):
    """Every ``<id>.xml`` of a folder (or the given ids, in order) -> Dataset.

    on_error="skip" logs a warning and drops a bad record instead of raising (its
    message is listed in ``metadata["skipped"]``). Images larger than
    ``max_image_pixels`` (0: no limit) are bad records.
    """
    check_on_error(on_error)
    annotations_dir = annotations_dir if is_url(annotations_dir) else Path(annotations_dir)
    if not is_dir(annotations_dir):
        raise DatasetError(f"{annotations_dir}: annotation folder not found")
    if ids is None:
        ids = xml_ids(annotations_dir)
    records, skipped = [], []
    for image_id in ids:
        try:
            records.append(parse_voc_xml(join(annotations_dir, f"{image_id}.xml"), images_dir,
                                         classes, max_image_pixels, exif_orientation))
        except DatasetError as err:
            handle_error(err, on_error)
            skipped.append(str(err))
    return Dataset(name or files.name(parent(annotations_dir)), tuple(classes), tuple(records),
                   metadata={"skipped": skipped},
                   max_image_pixels=max_image_pixels, exif_orientation=exif_orientation)


def load_voc(root, split, classes=VOC_CLASSES, on_error="raise",
             max_image_pixels=MAX_IMAGE_PIXELS, exif_orientation=True):
    """A split of a devkit-layout VOC year, e.g. ``load_voc("VOCdevkit/VOC2007", "trainval")``.

    Reads ImageSets/Main/<split>.txt, Annotations/<id>.xml and JPEGImages/<id>.jpg.
    """
    root = root if is_url(root) else Path(root)
    split_file = join(root, "ImageSets", "Main", f"{split}.txt")
    if not is_file(split_file):
        raise DatasetError(f"{split_file}: split file not found (is {root} a VOC year folder "
                           "such as VOCdevkit/VOC2007?)")
    ids = [line.split()[0] for line in read_text(split_file).splitlines() if line.strip()]
    dataset = load_voc_folder(join(root, "Annotations"), join(root, "JPEGImages"), classes, ids,
                              f"{files.name(root)}_{split}", on_error, max_image_pixels,
                              exif_orientation)
    return dataset


def write_voc_xml(path, record, classes):
    """Writes a record as VOC XML (1-based boxes), atomically."""
    root = ElementTree.Element("annotation")
    ElementTree.SubElement(root, "filename").text = Path(record.image_path).name
    size = ElementTree.SubElement(root, "size")
    ElementTree.SubElement(size, "width").text = str(record.width)
    ElementTree.SubElement(size, "height").text = str(record.height)
    ElementTree.SubElement(size, "depth").text = "3"
    for box, label, difficult in zip(record.boxes, record.classes, record.difficult):
        obj = ElementTree.SubElement(root, "object")
        ElementTree.SubElement(obj, "name").text = classes[label - 1]
        ElementTree.SubElement(obj, "difficult").text = str(int(difficult))
        bndbox = ElementTree.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), np.asarray(box) + 1):
            ElementTree.SubElement(bndbox, key).text = f"{value:g}"
    atomic_write(path, ElementTree.tostring(root))
