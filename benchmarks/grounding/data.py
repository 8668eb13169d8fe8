"""Grounding samples and the loaders of the four published formats, from a local folder.

Nothing is downloaded: point `--data` at the folder you downloaded. Every loader returns
`GroundingSample`s whose target region is in *pixels of the sample's image*, plus a
`LoadReport` that says which variant of the format it read.

Formats (facts and sources in tests/test_grounding_data.py):

- ScreenSpot (SeeClick, `pretrain/screenspot_test.py`): `screenspot_{mobile,desktop,web}.json`,
  records `img_filename`, `bbox` = [x, y, w, h] pixels, `instruction`, `data_type`
  (text / icon), `data_source`. The Hugging Face copy names the file `file_name` and
  stores corners [x1, y1, x2, y2] (pixels, or fractions when every value is <= 1); as
  published (rootsautomation/ScreenSpot) it is parquet shards `data/test-*.parquet` with
  the images embedded, read with pyarrow.
- ScreenSpot-v2: the same schema in `screenspot_{mobile,desktop,web}_v2.json`.
- ScreenSpot-Pro: `annotations/<app>_<os>.json`, records `img_filename`, `bbox` =
  [x1, y1, x2, y2] pixels, `img_size`, `instruction`, `instruction_cn`, `application`,
  `platform`, `ui_type`, `group`, `id`; `gt_type` "negative" marks a sample whose
  correct answer is a refusal (the reference harness assigns it per run).
- OSWorld-G: `OSWorld-G.json` / `OSWorld-G_refined.json`, records `id`, `image_path`,
  `image_size`, `instruction`, `box_type` (bbox [x, y, w, h] / polygon flat [x1, y1, x2,
  y2, ...] / refusal), `box_coordinates`, `GUI_types`; categories from
  `classification_result.json` ({"classified": {category: [{"id": ...}, ...]}}).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BENCHMARKS", "GroundingDataError", "GroundingSample", "LoadReport", "Region",
    "load_benchmark", "load_osworld_g", "load_screenspot", "load_screenspot_pro",
]

BENCHMARKS = ("screenspot", "screenspot-v2", "screenspot-pro", "osworld-g")
SCREENSPOT_SPLITS = ("mobile", "desktop", "web")
OSWORLD_G_CATEGORIES = ("text_matching", "element_recognition", "layout_understanding",
                        "fine_grained_manipulation", "refusal")
_IMAGE_DIRS = ("", "images", "screenspot_imgs", "imgs", "screenspotv2_image")


class GroundingDataError(ValueError):
    """A dataset folder or record that cannot be read; the message says what is wrong."""


class Region(BaseModel):
    """Where the answer must point, in image pixels.

    kind: "box" (x1 <= x <= x2 and y1 <= y <= y2, edges included), "polygon" (inside the
    polygon by the even-odd rule), "refusal" (no element matches: the model must refuse).
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["box", "polygon", "refusal"]
    box: tuple[float, float, float, float] | None = Field(
        None, description="x1, y1, x2, y2 in pixels (kind box; the polygon's bounds).")
    polygon: tuple[tuple[float, float], ...] | None = None

    @classmethod
    def from_corners(cls, x1: float, y1: float, x2: float, y2: float) -> Region:
        return cls(kind="box", box=(float(x1), float(y1), float(x2), float(y2)))

    @classmethod
    def from_polygon(cls, flat: list[float]) -> Region:
        if len(flat) < 6 or len(flat) % 2:
            raise GroundingDataError(f"a polygon needs an even number (>= 6) of values, got "
                                     f"{len(flat)}")
        points = tuple((float(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2))
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        return cls(kind="polygon", polygon=points, box=(min(xs), min(ys), max(xs), max(ys)))

    def area_px(self) -> float:
        """The region's area in square pixels (shoelace for polygons; 0 for refusal)."""
        if self.kind == "box" and self.box is not None:
            x1, y1, x2, y2 = self.box
            return max(0.0, x2 - x1) * max(0.0, y2 - y1)
        if self.kind == "polygon" and self.polygon is not None:
            pts = self.polygon
            twice = sum(pts[i][0] * pts[i - 1][1] - pts[i - 1][0] * pts[i][1]
                        for i in range(len(pts)))
            return abs(twice) / 2
        return 0.0

    def centre(self) -> tuple[float, float] | None:
        if self.box is None:
            return None
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2, (y1 + y2) / 2


class GroundingSample(BaseModel):
    """One grounding question: an image, an instruction, the region to point at.

    sample_id is unique within a benchmark (it names the episode in the run directory).
    platform / ui_type / group / application / categories are what the published tables
    break results down by; image_size is (width, height) in pixels when the record says.
    """

    model_config = ConfigDict(frozen=True)

    sample_id: str
    benchmark: str
    image_path: Path
    instruction: str
    region: Region
    image_size: tuple[int, int] | None = None
    platform: str | None = None
    ui_type: str | None = Field(None, description="'text' or 'icon'.")
    group: str | None = None
    application: str | None = None
    categories: tuple[str, ...] = ()
    record: dict[str, Any] = Field(default_factory=dict, description="The source record.")

    def table_fields(self) -> dict[str, Any]:
        """What the results tables need (stored with each recorded sample)."""
        return {"benchmark": self.benchmark, "platform": self.platform,
                "ui_type": self.ui_type, "group": self.group,
                "application": self.application, "categories": list(self.categories),
                "region": self.region.model_dump(mode="json")}


class LoadReport(BaseModel):
    """What a loader read: the files, the format variant it detected, the sample count."""

    benchmark: str
    files: list[str]
    variant: str = Field(..., description="e.g. 'original (img_filename, bbox x,y,w,h)'.")
    samples: int
    image_dir: str


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GroundingDataError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise GroundingDataError(f"{path} is not valid JSON: {exc}") from None


def _records(path: Path) -> list[dict[str, Any]]:
    data = _read_json(path)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise GroundingDataError(f"{path}: expected a JSON list of records (objects)")
    return data


def _image_dir(root: Path, first_image: str) -> Path:
    """The folder holding the images: the data folder or a usual subfolder of it."""
    for name in _IMAGE_DIRS:
        folder = root / name if name else root
        if (folder / first_image).is_file():
            return folder
    tried = ", ".join(str(root / n) if n else str(root) for n in _IMAGE_DIRS)
    raise GroundingDataError(f"image {first_image!r} not found in any of: {tried}; put the "
                             "benchmark's images in DATA/images")


def _need(record: dict[str, Any], key: str, where: str) -> Any:
    if key not in record:
        raise GroundingDataError(f"{where}: record has no {key!r} field (fields: "
                                 f"{', '.join(sorted(record))})")
    return record[key]


def _four(value: Any, where: str) -> list[float]:
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise GroundingDataError(f"{where}: bbox must be 4 numbers, got {value!r}")
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        raise GroundingDataError(f"{where}: bbox must be 4 numbers, got {value!r}") from None


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.width, image.height


def load_screenspot(root: str | Path, version: Literal[1, 2] = 1,
                    splits: tuple[str, ...] = SCREENSPOT_SPLITS
                    ) -> tuple[list[GroundingSample], LoadReport]:
    """ScreenSpot (version 1) or ScreenSpot-v2 from `root` (see the module docstring).

    Detects the original records (img_filename, bbox [x, y, w, h]) or the Hugging Face
    copy's (file_name, corners; fractions when all values <= 1) per file, and reports it.
    """
    root = Path(root)
    benchmark = "screenspot" if version == 1 else "screenspot-v2"
    suffix = "" if version == 1 else "_v2"
    samples: list[GroundingSample] = []
    files: list[str] = []
    variants: set[str] = set()
    image_dir: Path | None = None
    for split in splits:
        path = root / f"screenspot_{split}{suffix}.json"
        if not path.is_file():
            continue
        files.append(path.name)
        for index, record in enumerate(_records(path)):
            where = f"{path.name}[{index}]"
            hf_copy = "file_name" in record and "img_filename" not in record
            filename = str(_need(record, "file_name" if hf_copy else "img_filename", where))
            if image_dir is None:
                image_dir = _image_dir(root, filename)
            values = _four(_need(record, "bbox", where), where)
            image_path = image_dir / filename
            size: tuple[int, int] | None = None
            if hf_copy:
                if all(0 <= v <= 1 for v in values):
                    size = _image_size(image_path)
                    values = [values[0] * size[0], values[1] * size[1],
                              values[2] * size[0], values[3] * size[1]]
                    variants.add("Hugging Face copy (file_name, bbox x1,y1,x2,y2 as fractions)")
                else:
                    variants.add("Hugging Face copy (file_name, bbox x1,y1,x2,y2 in pixels)")
                region = Region.from_corners(*values)
            else:
                x, y, w, h = values
                region = Region.from_corners(x, y, x + w, y + h)
                variants.add("original (img_filename, bbox x,y,w,h in pixels)")
            samples.append(GroundingSample(
                sample_id=f"{split}-{index:05d}", benchmark=benchmark, image_path=image_path,
                instruction=str(_need(record, "instruction", where)), region=region,
                image_size=size, platform=split, ui_type=record.get("data_type"),
                group=record.get("data_source"), record=record))
    if not files:
        shards = _parquet_shards(root)
        if shards:
            return _load_screenspot_parquet(root, shards, benchmark, splits)
        raise GroundingDataError(
            f"no screenspot_{{{','.join(splits)}}}{suffix}.json (nor the Hugging Face copy's "
            f"data/test-*.parquet) in {root}: point --data at the folder with the "
            f"{benchmark} annotation files")
    report = LoadReport(benchmark=benchmark, files=files, variant="; ".join(sorted(variants)),
                        samples=len(samples), image_dir=str(image_dir))
    return samples, report


def load_screenspot_pro(root: str | Path, *, language: Literal["en", "cn"] = "en",
                        negatives: bool = False) -> tuple[list[GroundingSample], LoadReport]:
    """ScreenSpot-Pro from `root` (annotations/*.json and images/).

    language "cn" asks with `instruction_cn`. negatives=True adds, as the reference's
    `--gt_type negative` run does, each sample again as a negative one (correct only when
    the model refuses); a record's own `gt_type` is honoured too.
    """
    root = Path(root)
    folder = root / "annotations" if (root / "annotations").is_dir() else root
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise GroundingDataError(f"no annotation files (*.json) in {folder}: point --data at "
                                 "the ScreenSpot-Pro folder (with annotations/ and images/)")
    samples: list[GroundingSample] = []
    image_dir: Path | None = None
    for path in paths:
        for index, record in enumerate(_records(path)):
            where = f"{path.name}[{index}]"
            filename = str(_need(record, "img_filename", where))
            if image_dir is None:
                image_dir = _image_dir(root, filename)
            instruction = record.get("instruction_cn") if language == "cn" else None
            instruction = instruction or str(_need(record, "instruction", where))
            size = record.get("img_size")
            common = dict(
                benchmark="screenspot-pro", image_path=image_dir / filename,
                instruction=instruction, image_size=tuple(size) if size else None,
                platform=record.get("platform"), ui_type=record.get("ui_type"),
                group=record.get("group"), application=record.get("application"),
                record=record)
            sample_id = str(record.get("id") or f"{path.stem}-{index:05d}")
            box = Region.from_corners(*_four(_need(record, "bbox", where), where))
            negative = record.get("gt_type") == "negative"
            samples.append(GroundingSample(
                sample_id=sample_id, region=Region(kind="refusal") if negative else box,
                categories=("negative",) if negative else ("positive",), **common))
            if negatives and not negative:
                samples.append(GroundingSample(
                    sample_id=f"{sample_id}-negative", region=Region(kind="refusal"),
                    categories=("negative",), **common))
    ids = [s.sample_id for s in samples]
    if len(set(ids)) != len(ids):
        raise GroundingDataError(f"{folder}: sample ids are not unique")
    report = LoadReport(benchmark="screenspot-pro", files=[p.name for p in paths],
                        variant="ScreenSpot-Pro (img_filename, bbox x1,y1,x2,y2 in pixels)"
                        + (", instruction_cn" if language == "cn" else ""),
                        samples=len(samples), image_dir=str(image_dir))
    return samples, report


def load_osworld_g(root: str | Path, *, refined: bool = False
                   ) -> tuple[list[GroundingSample], LoadReport]:
    """OSWorld-G from `root` (OSWorld-G.json or OSWorld-G_refined.json, images/, and
    classification_result.json for the categories; without it every sample is
    "unclassified", as the reference evaluator labels it)."""
    root = Path(root)
    name = "OSWorld-G_refined.json" if refined else "OSWorld-G.json"
    path = root / name
    if not path.is_file():
        raise GroundingDataError(f"{path} does not exist: point --data at the OSWorld-G "
                                 f"benchmark folder (with {name} and images/)")
    categories_of: dict[str, list[str]] = {}
    classification = root / "classification_result.json"
    if classification.is_file():
        classified = _read_json(classification).get("classified", {})
        for category, items in classified.items():
            for item in items:
                categories_of.setdefault(str(item["id"]), []).append(category)
    samples: list[GroundingSample] = []
    image_dir: Path | None = None
    for index, record in enumerate(_records(path)):
        where = f"{name}[{index}]"
        filename = str(_need(record, "image_path", where))
        if image_dir is None:
            image_dir = _image_dir(root, filename)
        box_type = _need(record, "box_type", where)
        coords = [float(v) for v in _need(record, "box_coordinates", where)]
        if box_type == "bbox":
            x, y, w, h = _four(coords, where)
            region = Region.from_corners(x, y, x + w, y + h)
        elif box_type == "polygon":
            region = Region.from_polygon(coords)
        elif box_type == "refusal":
            region = Region(kind="refusal")
        else:
            raise GroundingDataError(f"{where}: unknown box_type {box_type!r} (bbox, polygon, "
                                     "refusal)")
        size = record.get("image_size")
        samples.append(GroundingSample(
            sample_id=f"{record.get('id', index)}-{index:04d}", benchmark="osworld-g",
            image_path=image_dir / filename, instruction=str(_need(record, "instruction", where)),
            region=region, image_size=tuple(size) if size else None,
            ui_type=None, categories=tuple(categories_of.get(str(record.get("id")),
                                                             ["unclassified"])),
            record=record))
    report = LoadReport(benchmark="osworld-g", files=[name] + (
        [classification.name] if classification.is_file() else []),
        variant=f"OSWorld-G ({name}; bbox x,y,w,h / polygon / refusal)"
        + ("" if classification.is_file() else "; no classification_result.json"),
        samples=len(samples), image_dir=str(image_dir))
    return samples, report


# The Hugging Face copy's `data_source` (its card: "interface platform, including iOS,
# Android, macOS, Windows and Web") -> ScreenSpot's three splits.
_SCREENSPOT_PLATFORM = {"ios": "mobile", "android": "mobile", "macos": "desktop",
                        "windows": "desktop"}
PARQUET_IMAGE_DIR = "images-from-parquet"


def _parquet_shards(root: Path) -> list[Path]:
    """The Hugging Face copy's `test` split: data/test-*.parquet (or test-*.parquet)."""
    return sorted(root.glob("data/test-*.parquet")) or sorted(root.glob("test-*.parquet"))


def _load_screenspot_parquet(root: Path, shards: list[Path], benchmark: str,
                             splits: tuple[str, ...]) -> tuple[list[GroundingSample], LoadReport]:
    """ScreenSpot as the Hugging Face copy keeps it (rootsautomation/ScreenSpot: parquet
    shards of the `test` split; `file_name`, `bbox` x1,y1,x2,y2, `instruction`,
    `data_type`, `data_source`, `image` with the PNG bytes embedded), read with pyarrow.
    The images are written once to <root>/images-from-parquet/ (our samples name files)."""
    import pyarrow.parquet as pq

    image_dir = root / PARQUET_IMAGE_DIR
    try:
        image_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise GroundingDataError(
            f"cannot write the embedded images to {image_dir} ({exc}): copy the dataset "
            "folder somewhere writable") from None
    samples: list[GroundingSample] = []
    variants: set[str] = set()
    index = 0
    for shard in shards:
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=32):
            for record in batch.to_pylist():
                where = f"{shard.name}[{index}]"
                index += 1
                platform = _SCREENSPOT_PLATFORM.get(
                    str(record.get("data_source", "")).lower(), "web")
                if platform not in splits:
                    continue
                filename = Path(str(_need(record, "file_name", where))).name
                image = _need(record, "image", where) or {}
                image_path = image_dir / filename
                data = image.get("bytes") if isinstance(image, dict) else None
                if not data:
                    raise GroundingDataError(f"{where}: no embedded image bytes")
                if not image_path.is_file() or image_path.stat().st_size != len(data):
                    image_path.write_bytes(data)
                values = _four(_need(record, "bbox", where), where)
                size = _image_size(image_path)
                if all(0 <= v <= 1 for v in values):
                    values = [values[0] * size[0], values[1] * size[1],
                              values[2] * size[0], values[3] * size[1]]
                    variants.add("Hugging Face parquet (bbox x1,y1,x2,y2 as fractions)")
                else:
                    variants.add("Hugging Face parquet (bbox x1,y1,x2,y2 in pixels)")
                samples.append(GroundingSample(
                    sample_id=f"{platform}-{index - 1:05d}", benchmark=benchmark,
                    image_path=image_path, instruction=str(_need(record, "instruction", where)),
                    region=Region.from_corners(*values), image_size=size, platform=platform,
                    ui_type=record.get("data_type"), group=record.get("data_source"),
                    record={k: v for k, v in record.items() if k != "image"}))
    report = LoadReport(benchmark=benchmark, files=[s.relative_to(root).as_posix() for s in shards],
                        variant="; ".join(sorted(variants)), samples=len(samples),
                        image_dir=str(image_dir))
    return samples, report


def load_benchmark(benchmark: str, root: str | Path, **options: Any
                   ) -> tuple[list[GroundingSample], LoadReport]:
    """Load `benchmark` (one of BENCHMARKS) from the folder `root`."""
    if benchmark == "screenspot":
        return load_screenspot(root, 1, **options)
    if benchmark == "screenspot-v2":
        return load_screenspot(root, 2, **options)
    if benchmark == "screenspot-pro":
        return load_screenspot_pro(root, **options)
    if benchmark == "osworld-g":
        return load_osworld_g(root, **options)
    raise KeyError(f"unknown grounding benchmark {benchmark!r}: use one of "
                   f"{', '.join(BENCHMARKS)}")
