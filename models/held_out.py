"""Write `models/breast-cancer.held-out.json`: the 114 rows `models/train.py` holds out, with their
true labels, for `gateway demo` (traffic whose truth is known, so live accuracy can be judged).

The serving install has no scikit-learn, so the rows ship as a file; this script wrote it once
from train.py's own split (same data, seed and fraction) and `tests/test_demo.py` checks the file
still equals what the split gives. Run it again (`python models/held_out.py`) if the split
changes. The file sits beside the model folders, not in one: the repository scan skips files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from train import MODEL_NAME, SPLIT_SEED, TEST_FRACTION

HERE = Path(__file__).resolve().parent


def held_out_text() -> str:
    """The file's text: one row per line, each value written as the shortest decimal that reads
    back as the same float32 (what the ONNX graph sees), so the rows are exact and small."""
    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    y = data.target.astype(np.int64)
    _, x_test, _, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y)
    header = {
        "model": MODEL_NAME,
        "about": ("the rows models/train.py holds out (sklearn's breast-cancer data, test "
                  f"fraction {TEST_FRACTION}, random_state {SPLIT_SEED}, stratified) and their "
                  "true labels; written by models/held_out.py, read by gateway demo"),
        "input": {"name": "input", "datatype": "FP32"},
        "label_output": "label",
        "features": [str(f) for f in data.feature_names],
        "labels": [int(label) for label in y_test],
    }
    head = "".join(f" {json.dumps(key)}: {json.dumps(value)},\n" for key, value in header.items())
    rows = ",\n".join("  [" + ", ".join(str(v) for v in row) + "]" for row in x_test)
    return f"{{\n{head} \"rows\": [\n{rows}\n ]\n}}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / f"{MODEL_NAME}.held-out.json",
                        help="file to write (default: models/breast-cancer.held-out.json)")
    args = parser.parse_args()
    args.out.write_text(held_out_text())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
