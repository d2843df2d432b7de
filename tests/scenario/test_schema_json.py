"""The JSON Schema (``privtuner schema``) says what the loader accepts (issue 14): every
bundled and example file validates against it, and what the loader refuses for a type,
enum or bound the schema refuses too."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from privtuner.cli import main
from privtuner.errors import ScenarioError
from privtuner.scenario import parse_yaml_text, validate_data
from privtuner.scenario.resources import bundled_names, bundled_text
from privtuner.scenario.schema import NUMBER_RULE, SCHEMA_ID, SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def schema() -> dict:
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["schema"]) == 0
    out = json.loads(buf.getvalue())
    jsonschema.Draft202012Validator.check_schema(out)
    return out


def _documents() -> list[tuple[str, str]]:
    docs = [(f"bundled/{n}", bundled_text(n)) for n in bundled_names()]
    docs += [(f"bundled/{n}", bundled_text(n)) for n in bundled_names("reproduce")]
    docs += [
        (str(p.relative_to(REPO)), p.read_text())
        for p in sorted((REPO / "scenarios").rglob("*.yaml"))
    ]
    return docs


def test_schema_has_id_version_and_the_number_rule(schema: dict) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID == "urn:privtuner:scenario-schema:1"
    assert schema["x-schema-version"] == SCHEMA_VERSION
    assert NUMBER_RULE in schema["description"]


def test_bounds_use_json_schema_keywords(schema: dict) -> None:
    text = json.dumps(schema)
    for word in ("ge", "le", "gt", "lt"):
        assert f'"{word}":' not in text
    count = schema["$defs"]["DevicesSpec"]["properties"]["count"]["anyOf"][0]
    assert (count["minimum"], count["maximum"]) == (1, 1_000_000)


def test_schema_enums(schema: dict) -> None:
    from privtuner.costmodels.privacy import privacy_metric_names
    from privtuner.optimizer import available_methods

    defs = schema["$defs"]
    assert defs["SolverSpec"]["properties"]["method"]["enum"] == sorted(available_methods())
    metric = defs["ObjectiveSpec"]["properties"]["privacy_metric"]
    assert metric["enum"] == privacy_metric_names()
    assert defs["FheSpec"]["properties"]["packing"]["enum"] == ["interleaved", "column"]
    # fhe.rescale: the protocol's options, as the cost model prices them (default first),
    # and "choose" (both priced, the optimiser picks)
    from privtuner.costmodels.model import RESCALE_AT, RESCALE_CHOICES
    from privtuner.fhe_profiling.ckks_ops import RESCALE_AT as PROTOCOL_RESCALE_AT

    rescale = defs["FheSpec"]["properties"]["rescale"]
    assert list(RESCALE_AT) == list(PROTOCOL_RESCALE_AT)
    assert rescale["enum"] == list(RESCALE_CHOICES) == [*RESCALE_AT, "choose"]
    assert rescale["default"] == RESCALE_AT[0]
    assert defs["SystemSpec"]["properties"]["fading"]["enum"] == ["rayleigh", "none"]
    assert defs["FheSpec"]["properties"]["ring_degrees"]["items"]["enum"] == [
        4096,
        8192,
        16384,
        32768,
    ]


@pytest.mark.parametrize(("label", "text"), _documents(), ids=[d[0] for d in _documents()])
def test_every_shipped_file_validates_against_the_schema(
    schema: dict, label: str, text: str
) -> None:
    data = parse_yaml_text(text, label)  # the loader's YAML 1.2 number rule (NUMBER_RULE)
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(data)]
    assert errors == [], (label, errors)


@pytest.mark.parametrize(
    "doc",
    [
        {"system": {"bandwidth_hz": True}},
        {"system": {"bandwidth_hz": "1e7"}},
        {"system": {"bandwidth_hz": 5e-324}},
        {"seed": -1},
        {"devices": {"p_max_dbm": 55}},
        {"devices": {"p_max_dbm": {"low": 10, "high": 41}}},
        {"devices": {"f_max_hz": 1e3}},
        {"devices": {"kappa": {"low": 1e-28}}},
        {"devices": {"count": 0}},
        {"devices": {"explicit": [{"distance_m": 0.01}]}},
        {"devices": {"explicit": [{"gain_db": 5}]}},
        {"solver": {"method": "exakt"}},
        {"objective": {"privacy_metric": "bits"}},
        {"fhe": {"packing": "rows"}},
        {"fhe": {"rescale": "client"}},
        {"fhe": {"ring_degrees": [1000]}},
        {"system": {"fading": "rician"}},
        {"workload": {"include_pooler": 1}},
        {"name": "n" * 201},
        {"bogus": 1},
        {"system": {"bandwith_hz": 1e7}},
    ],
)
def test_schema_refuses_what_the_loader_refuses(schema: dict, doc: dict) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(doc)), doc
    with pytest.raises(ScenarioError):
        spec = validate_data(doc)
        from privtuner.pipeline import check_solvable

        check_solvable(spec)


@pytest.mark.parametrize(
    "doc",
    [
        {"system": {"bandwidth_hz": 1e3}},
        {"devices": {"count": 1e3}},  # an integral float is an integer for both
        {"devices": {"p_max_dbm": {"low": -30, "high": 40}}},
        {"fhe": {"ring_degrees": [8192, 16384]}},
    ],
)
def test_schema_accepts_what_the_loader_accepts(schema: dict, doc: dict) -> None:
    assert not list(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    validate_data(doc)
