"""Write a manifest of the real blurry images in shared/data/real (test only, never trained on).

Pairs (blur/ + sharp/ with the same name) get their sharp path; blurry-only folders get
sharp = null and are scored with no-reference metrics and router verdicts.

    python benchmarks/model_card/real_manifest.py ../shared/data/real OUT/manifest.jsonl
"""

from __future__ import annotations

import sys
from pathlib import Path

from demoe.data.manifest import PairRecord, write_manifest

# folder -> (dataset name for the scoring protocol, blur type), from shared/data/README.md
FOLDERS = {
    "GoPro": ("GoPro", "synth_global_motion"),
    "RealBlur": ("RealBlur-J", "global_motion"),
    "Real-LOLBlur": ("Real-LOLBlur", "low_light"),
    "LOLBlur": ("LOLBlur", "low_light"),
    "CUHK_defocus": ("CUHK-defocus", "defocus"),
    "defocus_misc": ("defocus-misc", "defocus"),
}
SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def real_records(root: Path) -> list[PairRecord]:
    records = []
    for folder, (dataset, task) in FOLDERS.items():
        blur_dir = root / folder / "blur"
        if not blur_dir.is_dir():
            raise FileNotFoundError(f"expected a folder of blurry images at {blur_dir}")
        for blurry in sorted(p for p in blur_dir.iterdir() if p.suffix.lower() in SUFFIXES):
            sharp = root / folder / "sharp" / blurry.name
            records.append(
                PairRecord(str(blurry), str(sharp) if sharp.is_file() else None, task, dataset, "test")
            )
    return records


if __name__ == "__main__":
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    records = real_records(root)
    write_manifest(out, records, relative_to_manifest=False)
    pairs = sum(r.sharp is not None for r in records)
    print(f"wrote {out}: {len(records)} images, {pairs} with ground truth")
