"""Numeric options of the profiling and fitting commands are checked while the arguments are
parsed: one line naming the option and what is allowed, before any encryption or output."""

from __future__ import annotations

from pathlib import Path

import pytest

from privtuner.cli import main


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["profile-lora", "--tokens", "-5"], "argument --tokens: must be >= 1 (got -5)"),
        (["profile-lora", "--seq-len", "0"], "argument --seq-len: must be >= 1 (got 0)"),
        (["profile-lora", "--seed", "-3"], "argument --seed: must be in [0, 2**63 - 1] (got -3)"),
        (["profile-lora", "--warmup", "-1"], "argument --warmup: must be >= 0 (got -1)"),
        (["profile-lora", "--timed-steps", "0"], "argument --timed-steps: must be >= 1 (got 0)"),
        (["profile", "--repeats", "0"], "argument --repeats: must be >= 1 (got 0)"),
        (
            ["fit", "r.csv", "--device-clear-s-per-token", "nan"],
            "argument --device-clear-s-per-token: must be a finite number (got 'nan')",
        ),
        (
            ["fit", "r.csv", "--device-clear-s-per-token=-1e-5"],
            "argument --device-clear-s-per-token: must be >= 0 (got -1e-05)",
        ),
        (
            ["fit", "r.csv", "--reference-frequency-hz", "0"],
            "argument --reference-frequency-hz: must be > 0 (got 0)",
        ),
    ],
)
def test_profiling_options_are_checked_while_parsing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], line: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main([*args, "--out", str(out)])
    assert exc.value.code == 1
    (err,) = capsys.readouterr().err.splitlines()
    assert err.startswith(f"error: privtuner {args[0]}: {line}")
    assert not out.exists()
