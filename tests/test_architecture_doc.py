"""The worked examples of docs/architecture.md run as written ("add a system", then "add a recipe")."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_examples_of_the_architecture_page_run(tmp_path):
    python, toml = blocks("python"), blocks("toml")
    assert len(python) == 2 and len(toml) == 1
    (tmp_path / "gaussian-bg.toml").write_text(toml[0])
    script = tmp_path / "example.py"
    prelude = "import torch\ntorch.set_num_threads(1)\n"
    script.write_text(prelude + python[0] + "\n" + python[1])  # one process: the registry lives in memory
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-W", "error", str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"ESS 0\.\d+ ± 0\.\d+ over 4 draws; log Z error [+-]\d", done.stdout)
    assert (tmp_path / "runs" / "gaussian" / "results.json").is_file()
