"""The suite's own guards work: a test that leaks a file handle fails, and it is that test which fails.

The inner session runs in a subprocess with this suite's ``conftest.py`` and ``filterwarnings = error`` (as in
``pyproject.toml``), tracemalloc off (the default), in a fixed order with a clean test after the leaking one.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

LEAKY = '''
def test_a_leaks_a_file_handle():
    handle = open(__file__)  # noqa: SIM115
    del handle


def test_b_is_clean():
    assert True
'''


def _run_inner(tmp_path: Path, env_depth: str) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text((HERE / "conftest.py").read_text())
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings =\n    error\n")
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:xdist",
           "test_leaky.py"]
    env = {"BOLTZFLOW_TRACEMALLOC": env_depth, "PATH": "/usr/bin:/bin"}
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)


def test_a_leaked_file_handle_fails_the_test_that_leaked_it(tmp_path):
    res = _run_inner(tmp_path, "0")
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "FAILED test_leaky.py::test_a_leaks_a_file_handle" in out and "1 failed, 1 passed" in out, out
    assert "Exception ignored in" in out and "test_leaky.py" in out, out  # the warning names the leaked file


def test_with_tracemalloc_on_the_failure_names_the_line_that_opened_the_file(tmp_path):
    res = _run_inner(tmp_path, "6")
    out = res.stdout + res.stderr
    assert res.returncode == 1 and "FAILED test_leaky.py::test_a_leaks_a_file_handle" in out, out
    assert "handle = open(__file__)" in out, out
