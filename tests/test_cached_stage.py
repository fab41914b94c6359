"""runner.cached_stage: a finished evaluation stage is reused only for the same key, and bad files recompute."""

import json

from boltzflow.experiments.runner import cached_stage, file_sha256


def test_cached_stage_reuses_only_a_result_with_the_same_key(tmp_path):
    path, calls = tmp_path / "stage.json", []

    def compute(value):
        def run():
            calls.append(value)
            return {"value": value, "nan": float("nan")}
        return run

    assert cached_stage(path, {"seed": 1, "cell": ("a", 0.1)}, compute(1))["value"] == 1
    assert cached_stage(path, {"seed": 1, "cell": ["a", 0.1]}, compute(2))["value"] == 1  # tuples saved as lists
    assert calls == [1]
    assert cached_stage(path, {"seed": 2, "cell": ["a", 0.1]}, compute(3))["value"] == 3  # another key: recompute
    assert json.loads(path.read_text())["key"]["seed"] == 2 and calls == [1, 3]
    for bad in ("{not json", "[1, 2]", '{"key": {"seed": 2, "cell": ["a", 0.1]}}'):  # torn, wrong shape, no result
        path.write_text(bad)
        assert cached_stage(path, {"seed": 2, "cell": ["a", 0.1]}, compute(4))["value"] == 4
    assert calls == [1, 3, 4, 4, 4]


def test_file_sha256_is_the_hash_of_the_bytes(tmp_path):
    import hashlib

    f = tmp_path / "w.bin"
    f.write_bytes(bytes(range(256)) * 5000)  # > 1 MiB: read in blocks
    assert file_sha256(f) == hashlib.sha256(f.read_bytes()).hexdigest()
