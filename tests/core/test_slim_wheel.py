"""scripts/slim_wheel.py: a wheel without the native libraries a GPU box does not load still installs
with pip and imports (the bitsandbytes wheel: 43 MB -> 7 MB, so that a device call's 64 MiB carry
holds it with the working tree and a dataset)."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "slim_wheel.py"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _toy_wheel(folder: Path) -> Path:
    files = {
        "toypkg/__init__.py": b"from pathlib import Path\nLIBS = sorted(p.name for p in Path(__file__).parent.glob('*.so'))\n",
        "toypkg/lib_cpu.so": b"\0cpu" * 100,
        "toypkg/lib_cuda118.so": b"\0old" * 1000,
        "toypkg/lib_cuda130.so": b"\0new" * 100,
        "toypkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: toypkg\nVersion: 1.0\n",
        "toypkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = (
        "\n".join([*(_record_line(n, d) for n, d in files.items()), "toypkg-1.0.dist-info/RECORD,,"]) + "\n"
    )
    wheel = folder / "toypkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
        z.writestr("toypkg-1.0.dist-info/RECORD", record)
    return wheel


def test_slimmed_wheel_installs_with_pip_and_keeps_only_the_kept_libraries(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    wheel = _toy_wheel(tmp_path / "full")
    out = tmp_path / "slim"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(wheel), str(out), "--drop", "toypkg/lib_*.so",
         "--keep", "toypkg/lib_cpu.so", "--keep", "toypkg/lib_cuda130.so"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    slim = out / wheel.name
    assert slim.stat().st_size < wheel.stat().st_size
    with zipfile.ZipFile(slim) as z:
        record = z.read("toypkg-1.0.dist-info/RECORD").decode()
        assert "toypkg/lib_cuda118.so" not in z.namelist() and "lib_cuda118" not in record
        assert all(line.split(",")[0] in z.namelist() for line in record.splitlines())
    # a real pip (the interpreter the environment was built from) installs it and it imports
    base = getattr(sys, "_base_executable", sys.executable)
    target = tmp_path / "site"
    subprocess.run(
        [base, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(target), str(slim)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    libs = subprocess.run(
        [sys.executable, "-c", "import toypkg; print(' '.join(toypkg.LIBS))"],
        cwd=tmp_path, env={"PYTHONPATH": str(target)}, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert libs == ["lib_cpu.so", "lib_cuda130.so"]


def test_bad_arguments_get_one_line_and_exit_2(tmp_path: Path) -> None:
    wheel = _toy_wheel(tmp_path)
    for args, key in (
        ([str(tmp_path / "nope.whl"), str(tmp_path / "o")], "wheel="),
        ([str(wheel), str(tmp_path)], "out_dir="),
    ):
        done = subprocess.run(
            [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
        )
        assert done.returncode == 2 and done.stdout.startswith(key) and len(done.stdout.splitlines()) == 1
    assert not (tmp_path / "o").exists()
