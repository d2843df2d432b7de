"""Commands that write many files check their output folder and optional dependencies before
any work: one ``error:`` line, exit code 1, no traceback, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _python(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=timeout
    )


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_reproduce_refuses_an_unwritable_out_before_any_work(tmp_path: Path) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("keep me\n")
    for out, why in (
        ("/proc/nope", "cannot write in folder /proc (No such file or directory)"),
        ("/sys/repro", "cannot write in folder /sys ("),
        (str(a_file), "is a file, not a folder"),
    ):
        proc = _python("-m", "privtuner", "reproduce", "--quick", "--no-progress", "--out", out)
        assert _one_error_line(proc).startswith(f"error: --out {out}: {why}")
        assert proc.stdout == ""
    assert a_file.read_text() == "keep me\n"


@pytest.mark.parametrize("module", ["torch", "tenseal"])
def test_profile_lora_without_the_fhe_extra_says_what_to_install(
    tmp_path: Path, module: str
) -> None:
    out = tmp_path / "lora"
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"  # as if not installed
        "from privtuner.cli import main\n"
        f"sys.exit(main(['profile-lora', '--tokens', '512', '--out', {str(out)!r}]))\n"
    )
    assert _one_error_line(_python("-c", code)) == (
        f"error: the optional package '{module}' is not installed (needed for privtuner "
        "profile-lora); install it with: pip install 'privtuner[fhe]'"
    )
    assert not out.exists()


def test_profile_lora_refuses_an_unwritable_out_before_profiling(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("tenseal")
    from privtuner.cli import main

    assert main(["profile-lora", "--quick", "--out", "/proc/lora"]) == 1
    assert capsys.readouterr().err == (
        "error: --out /proc/lora: cannot write in folder /proc (No such file or directory)\n"
    )
