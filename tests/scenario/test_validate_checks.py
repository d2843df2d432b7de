"""``privtuner validate`` runs every check ``solve`` runs that needs no solving (issue 14,
"Validation and packaging"; issue 15, the cost model at validate), naming the field path, and
reads folders as ``batch`` does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from privtuner.cli import main
from privtuner.costmodels.fitting import DEFAULT_MODEL_PATH
from privtuner.errors import ScenarioError
from privtuner.pipeline import check_solvable
from privtuner.scenario import load_scenario_text


def _validate(capsys: pytest.CaptureFixture[str], *paths: Path) -> tuple[int, str, list[str]]:
    rc = main(["validate", *map(str, paths)])
    out, err = capsys.readouterr()
    return rc, out, err.splitlines()


def _file(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "solver: {method: exakt}",
            "solver.method: unknown method 'exakt'; valid methods: ao, ",
        ),
        (
            "objective: {privacy_metric: bits}",
            "objective.privacy_metric: unknown privacy metric 'bits'; valid: log2_n, "
            "security_bits, security_bits_uncapped",
        ),
        (
            "objective: {kind: constrained, privacy_min: 100000}",
            "fhe: no CKKS set of the catalogue is allowed (fhe.min_security_bits 128, "
            "min_precision_bits 20, ring_degrees [4096, 8192, 16384, 32768], scale bits 20-40, "
            "objective.privacy_min 100000; best security 256 bits (the HE standard's top; "
            "uncapped estimate ",
        ),
        (
            "fhe: {cost_model: nope.json}",
            "fhe.cost_model: cost model file not found: ",
        ),
        (
            "fhe: {ring_degrees: [4096], scale_bits_min: 40}",
            "fhe: no CKKS parameter set satisfies ring_degrees=[4096]",
        ),
    ],
)
def test_validate_refuses_what_solve_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: str
) -> None:
    p = _file(tmp_path, text)
    rc, out, err = _validate(capsys, p)
    assert rc == 1
    assert out == ""
    assert len(err) == 1
    assert err[0].startswith(f"error: {p}: {line}"), err


def test_validate_refuses_a_model_without_the_packing_curves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cost model profiled before the interleaved packing (no ``*_il`` curves) cannot price
    the default packing: validate says so, as solve would."""
    from privtuner.costmodels.fitting import DEFAULT_MODEL_PATH

    model = json.loads(DEFAULT_MODEL_PATH.read_text())
    model["curves"] = {k: v for k, v in model["curves"].items() if "_il" not in k}
    (tmp_path / "old.json").write_text(json.dumps(model))
    p = _file(tmp_path, "fhe: {cost_model: old.json}")
    rc, out, err = _validate(capsys, p)
    assert (rc, out, len(err)) == (1, "", 1)
    assert err[0].startswith(
        f"error: {p}: fhe: cost model lacks curves for encrypt_il, decrypt_il, project_il "
        "needed by fhe.packing 'interleaved'"
    ), err
    p = _file(tmp_path, "fhe: {cost_model: old.json, packing: column}", "c.yaml")
    assert _validate(capsys, p)[0] == 0


def test_validate_names_the_sweep_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _file(tmp_path, "sweep: {objective.privacy_metric: [security_bits, bits]}")
    rc, _, err = _validate(capsys, p)
    assert rc == 1
    assert err == [
        f"error: {p}: sweep point [objective.privacy_metric=bits]: objective.privacy_metric: "
        "unknown privacy metric 'bits'; valid: log2_n, security_bits, security_bits_uncapped"
    ]


def test_validate_loads_the_cost_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "garbage.json").write_text("not json at all")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    model = json.loads(DEFAULT_MODEL_PATH.read_text())
    model["curves"]["ct_bytes_fresh"]["coefficients"]["c"] = -0.2  # a power law's c
    (tmp_path / "negative.json").write_text(json.dumps(model))
    rc, _, err = _validate(
        capsys,
        _file(tmp_path, "fhe: {cost_model: garbage.json}", "g.yaml"),
        _file(tmp_path, "fhe: {cost_model: binary.json}", "b.yaml"),
        _file(tmp_path, "fhe: {cost_model: negative.json}", "n.yaml"),
    )
    assert rc == 1
    assert len(err) == 3
    assert "g.yaml: fhe.cost_model: " in err[0] and "not valid JSON" in err[0]
    assert "b.yaml: fhe.cost_model: " in err[1] and "cannot read the cost model" in err[1]
    assert err[2].endswith(
        "negative.json: fitted curve 'ct_bytes_fresh': a power law c * prod v^a needs c > 0 "
        "(got c = -0.2)"
    )


def test_check_solvable_accepts_the_default() -> None:
    check_solvable(load_scenario_text("{}"))


def test_check_solvable_takes_the_method_and_source() -> None:
    with pytest.raises(ScenarioError) as exc:
        check_solvable(load_scenario_text("{}"), method="nope", source="here")
    assert exc.value.lines()[0].startswith("here: solver.method: unknown method 'nope'")


def test_validate_reads_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "scen"
    folder.mkdir()
    _file(folder, "seed: 1", "a.yaml")
    _file(folder, "sweep: {seed: [1, 2]}", "b.yml")
    _file(folder, "not a scenario", "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out, err = _validate(capsys, folder, empty)
    assert out.splitlines() == [
        f"{folder / 'a.yaml'}: ok",
        f"{folder / 'b.yml'}: ok (2 sweep points)",
    ]
    assert rc == 1
    assert err == [f"error: {empty}: directory contains no scenario file (*.yaml, *.yml)"]


def test_cli_error_lines_are_escaped_and_bounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = _file(tmp_path, 'name: "x"\nsolver: {method: "ex\\nakt\\u2028' + "z" * 3000 + '"}\n')
    rc, _, err = _validate(capsys, p)
    assert rc == 1
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "unknown method 'ex\\nakt\\u2028zzz" in err[0]  # escaped, on one line
    assert len(err[0]) < 900  # the file, then the problem cut at 500 characters
    assert err[0].endswith("...")


def test_validate_names_the_file_of_a_sweep_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = _file(tmp_path, "sweep: {system.bandwidth_hz: [1.00000001e7, 1.00000002e7]}")
    rc, _, err = _validate(capsys, p)
    assert rc == 1
    assert err == [
        f"error: {p}: sweep: two points get the same name scenario[system.bandwidth_hz=1e7] "
        "(values that differ only beyond 6 significant digits)"
    ]


def test_validate_path_over_the_os_limit(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _validate(capsys, Path("n" * 300))
    assert rc == 1
    assert err == ["error: " + "n" * 77 + "...: cannot read: file name too long"]


def test_accuracy_study_is_read_relative_to_the_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``fhe.accuracy_study`` is a path relative to the YAML file, like ``fhe.cost_model``;
    validate reads it and names a set it lacks, and passes once every allowed set is there."""
    from privtuner.costmodels.catalogue import generate_catalogue

    sets = [p.name for p in generate_catalogue() if p.poly_modulus_degree == 16384]
    runs = [{"mode": "plain", "set_name": None, "packing": None}] + [
        {"mode": "simulate", "set_name": s, "packing": "interleaved", "accuracy_loss_points": 0.2}
        for s in sets
    ]
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "acc.json").write_text(json.dumps({"runs": runs[:-1]}))
    head = "fhe: {max_accuracy_loss_points: 0.5, accuracy_study: studies/acc.json, "
    p = _file(tmp_path, head + "ring_degrees: [16384]}")
    rc, out, err = _validate(capsys, p)
    assert (rc, out, len(err)) == (1, "", 1)
    assert (
        f"accuracy_study {tmp_path / 'studies' / 'acc.json'} has no interleaved run of " in (err[0])
    ), err
    (tmp_path / "studies" / "acc.json").write_text(json.dumps({"runs": runs}))
    assert _validate(capsys, p)[0] == 0
    p = _file(tmp_path, "fhe: {max_accuracy_loss_points: 0.5}", "nostudy.yaml")
    rc, _, err = _validate(capsys, p)
    assert rc == 1 and "max_accuracy_loss_points needs accuracy_study" in err[0], err


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("fhe: {ring_degrees: [4096]}", "fhe: no catalogue set is left: fhe.min_precision_bits"),
        (
            "fhe: {scale_bits_min: 50, scale_bits_max: 60}",
            "fhe: catalogue set N8192_q60-50-60_s50 lies outside the cost model's profiled "
            "domain (curve 'precision_bits_il': log2_q = 170, profiled [100, 160]); with "
            "fhe.ring_degrees [4096, 8192, 16384, 32768] the model covers scale bits 20-40: give "
            "fhe.scale_bits_min and fhe.scale_bits_max within them",
        ),
        ("solver: {method: exakt}", "solver.method: unknown method 'exakt'"),
    ],
)
def test_solve_names_the_file_and_field_as_validate_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, start: str
) -> None:
    p = _file(tmp_path, text)
    rc, out, err = _validate(capsys, p)
    assert rc == 1 and out == ""
    assert len(err) == 1 and err[0].startswith(f"error: {p}: {start}"), err
    assert "extrapolate" not in err[0]
    assert main(["solve", str(p)]) == 1
    out, solve_err = capsys.readouterr()
    assert out == "" and solve_err.splitlines() == err


def test_solve_with_a_valid_method_option_passes_a_bad_scenario_method(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = _file(tmp_path, "solver: {method: exakt}\ndevices: {count: 2}\n")
    assert main(["solve", str(p), "--method", "exact", "--max-rows", "0"]) == 0
    out, _ = capsys.readouterr()
    assert "... 2 more devices" in out
    assert main(["solve", str(p), "--method", "nope"]) == 1
    assert capsys.readouterr().err.startswith("error: unknown method 'nope'")


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("--max-rows", "-3", "must be >= 0 (got -3)"),
        ("--max-rows", "x", "must be an integer"),
        ("--time-limit", "-1", "must be in (0, 1e6] seconds (got -1)"),
        ("--time-limit", "1e9", "must be in (0, 1e6] seconds (got 1e+09)"),
        ("--time-limit", "inf", "must be a finite number (got 'inf')"),
        ("--rel-tol", "0", "must be in [1e-12, 1) (got 0)"),
        ("--rel-tol", "1e-300", "must be in [1e-12, 1) (got 1e-300)"),
        ("--rel-tol", "x", "must be a number (got 'x')"),
    ],
)
def test_solve_refuses_bad_numeric_options(
    capsys: pytest.CaptureFixture[str], option: str, value: str, why: str
) -> None:
    default = Path(__file__).resolve().parents[2] / "scenarios" / "default.yaml"
    with pytest.raises(SystemExit) as exc:
        main(["solve", str(default), option, value])
    assert exc.value.code == 1
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"error: privtuner solve: argument {option}: {why}")
