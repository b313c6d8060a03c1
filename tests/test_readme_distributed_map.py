"""The README's Distributed Map example runs as printed and writes AWS's result files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_distributed_map_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### A Distributed Map over a CSV file\n")[1]
    script = section.split("```bash\n")[1].split("```")[0]
    (tmp_path / "example.sh").write_text(script)
    bin_dir = str(Path(sys.executable).parent)
    result = subprocess.run(
        ["bash", "-e", "example.sh"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PYTHONPATH": str(ROOT),
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", str(tmp_path)),
        },
    )
    assert result.returncode == 0, result.stderr
    (manifest_path,) = (tmp_path / "s3" / "orders" / "totals").glob("*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["MapRunArn"].split(":mapRun:")[1].split(":")[0].endswith("/orders")
    (succeeded,) = manifest["ResultFiles"]["SUCCEEDED"]
    records = json.loads((tmp_path / "s3" / "orders" / succeeded["Key"]).read_text())
    assert [json.loads(r["Output"]) for r in records] == [
        {"ids": ["1", "2"], "rows": 2},
        {"ids": ["3", "4"], "rows": 2},
        {"ids": ["5"], "rows": 1},
    ]
    assert f'"Key": "{succeeded["Key"].rsplit("/", 1)[0]}/manifest.json"' in result.stdout
