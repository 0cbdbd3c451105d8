"""Tests for trimlab.data: registry, split recipes, sampling, errors, hub row mappers,
the package layout, and the one item validator shared with trimlab.evaluate.

Everything runs offline. Tests marked ``mirror`` use the real local mirror and are
skipped unless ``TRIMLAB_DATA_DIR`` is set; the rest use small JSONL files in tmp_path.
"""

from __future__ import annotations

import ast
import csv
import itertools
import json
import os
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import trimlab
from trimlab import data as D
from trimlab.data import hub, loading, registry, schema
from trimlab.data.splits import parse_spec
from trimlab.evaluate import validate_items
from trimlab.prompts import build_prompt

MIRROR = os.environ.get(D.DATA_ENV)
mirror = pytest.mark.skipif(not MIRROR, reason=f"{D.DATA_ENV} not set (no local mirror)")

# Split sizes measured on the mirror (documented in data/README.md and data/<name>.md).
SIZES = {
    "sciq": {"train": 11667, "calib": 1000, "test": 1000},
    "piqa": {"train": 953, "calib": 194, "test": 691},
    "arc_easy": {"train": 2246, "calib": 570, "test": 2376},
    "arc_challenge": {"calib": 294, "test": 1172},
    "medmcqa": {"train": 2043, "calib": 418, "test": 1722},
    "pubmedqa": {"train": 408, "calib": 92, "test": 500},
    "mmlu_law": {"train": 965, "calib": 209, "test": 783},
    "mmlu_econ": {"train": 404, "calib": 75, "test": 344},
}


@pytest.fixture(autouse=True)
def _isolate(monkeypatch):
    """Restore the registry and forget hub results after every test."""
    saved = dict(D.DATASETS)
    yield
    D.DATASETS.clear()
    D.DATASETS.update(saved)
    registry.rebuild_domains()
    for key in [k for k in loading.CACHE if k[0] == "hub"]:
        del loading.CACHE[key]


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(D.DATA_ENV, raising=False)


def _items(prefix: str, n: int, k: int = 4) -> list[dict]:
    return [
        {
            "id": f"{prefix}-{i}",
            "question": f"{prefix} question number {i}?",
            "choices": [f"option {j} of {i}" for j in range(k)],
            "answer": i % k,
            "context": None,
            "subject": prefix,
        }
        for i in range(n)
    ]


def _write(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _disjoint(splits: dict[str, list[dict]]) -> None:
    for (a, xs), (b, ys) in itertools.combinations(splits.items(), 2):
        assert not {x["id"] for x in xs} & {y["id"] for y in ys}, (a, b)
        text = {(x["question"], tuple(x["choices"])) for x in xs}
        assert not text & {(y["question"], tuple(y["choices"])) for y in ys}, (a, b)
        assert not {D.item_key(x) for x in xs} & {D.item_key(y) for y in ys}, (a, b)


def _schema(items: list[dict]) -> None:
    for it in items:
        assert set(it) == set(D.KEYS)
        assert isinstance(it["question"], str) and it["question"]
        assert isinstance(it["choices"], list) and it["choices"]
        assert all(isinstance(c, str) for c in it["choices"])
        assert type(it["answer"]) is int and 0 <= it["answer"] < len(it["choices"])
        assert it["context"] is None or isinstance(it["context"], str)
        assert it["subject"] is None or isinstance(it["subject"], str)


# ------------------------------------------------------------------------ registry


def test_registry_and_domains():
    assert D.DOMAINS == {
        "science": ["sciq"],
        "commonsense": ["piqa", "arc_easy"],
        "medical": ["medmcqa"],
        "legal": ["mmlu_law"],
        "finance": ["mmlu_econ"],
    }
    assert D.RELATED == {"medical": ["pubmedqa"]}
    assert set(D.dataset_names()) == set(SIZES)
    assert D.dataset_names("medical") == ["medmcqa", "pubmedqa"]
    assert D.domain_of("pubmedqa") == "medical" and D.domain_of("arc_challenge") is None
    assert "NC" in D.licence("sciq") and "SA" in D.licence("arc_easy")
    assert D.licence("medical") == "MIT"
    assert D.DATASETS["mmlu_law"].subjects == D.MMLU_LAW
    assert D.DATASETS["sciq"].has_context and not D.DATASETS["piqa"].has_context
    assert D.get_dataset("arc_challenge").splits() == ("calib", "test")


def test_carve_recipe():
    assert D.carve("all") == {
        "train": "all[50%:100%]",
        "calib": "all[40%:50%]",
        "test": "all[0%:40%]",
    }
    assert parse_spec("validation+test[40%:50%]") == (["validation", "test"], 0.4, 0.5)
    with pytest.raises(ValueError, match="test \\+ calib"):
        D.carve("all", test=0.9, calib=0.2)
    with pytest.raises(ValueError, match="bad split spec"):
        parse_spec("validation[40:50]")


# ------------------------------------------------------------------- package layout

# Every public name of the old single-module trimlab/data.py.
OLD_PUBLIC = (
    "CC_BY_SA DATASETS DATA_ENV DOMAINS Dataset Item KEYS MMLU_ECON MMLU_LAW PUBMEDQA_CHOICES "
    "RELATED RowMapper SAME SCIQ_SEED SPLITS SPLIT_SEED answer_key arc_row carve dataset_names "
    "domain_of get_dataset item_key licence load_domain make_item medmcqa_row mmlu_row piqa_row "
    "pubmedqa_official_split pubmedqa_row register_dataset resolve_data_dir sample sciq_row "
    "split_sizes unregister_dataset validate_item"
).split()
PACKAGE = Path(D.__file__).parent


def test_package_reexports_the_old_names():
    assert set(OLD_PUBLIC) <= set(D.__all__)
    namespace: dict = {}
    exec("from trimlab.data import *", namespace)
    for name in D.__all__:
        assert namespace[name] is getattr(D, name), name
    assert trimlab.load_domain is D.load_domain and trimlab.DOMAINS is D.DOMAINS
    assert D.DATASETS is registry.DATASETS and D.validate_item is schema.validate_item


def test_package_modules_are_small_documented_and_private_names_stay_home():
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{path.name} has no module docstring"
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 300, path.name
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trimlab"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id in {"hub", "loading", "registry", "schema", "splits"}:
                    assert not node.attr.startswith("_"), (
                        f"{path.name}: {node.value.id}.{node.attr}"
                    )


def test_hub_fetch_is_datasets_load_dataset(monkeypatch):
    import datasets

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or [])
    assert hub.load_hf("allenai/ai2_arc", "ARC-Easy", "test") == []
    assert calls == [(("allenai/ai2_arc", "ARC-Easy"), {"split": "test"})]


# ------------------------------------------------------------ user datasets (no mirror)


def test_register_single_file_carves_disjoint_splits(tmp_path, no_env):
    rows = _items("toy", 400)
    D.register_dataset("toy", _write(tmp_path / "toy.jsonl", rows), domain="toydom")
    assert D.DOMAINS["toydom"] == ["toy"] and D.domain_of("toy") == "toydom"
    splits = {s: D.load_domain("toy", s) for s in D.SPLITS}
    _disjoint(splits)
    for items in splits.values():
        _schema(items)
    assert sorted(it["id"] for s in splits.values() for it in s) == sorted(r["id"] for r in rows)
    assert 120 < len(splits["test"]) < 200 and 20 < len(splits["calib"]) < 65
    # same recipe, same split, whatever the file order
    shuffled = rows[:]
    random.Random(5).shuffle(shuffled)
    D.register_dataset("toy2", _write(tmp_path / "toy2.jsonl", shuffled))
    for s in D.SPLITS:
        assert {it["id"] for it in D.load_domain("toy2", s)} == {it["id"] for it in splits[s]}


def test_register_list_and_mapping_and_leak_filter(tmp_path):
    a, b = _items("a", 30), _items("b", 30)
    D.register_dataset("ab", [_write(tmp_path / "a.jsonl", a), _write(tmp_path / "b.jsonl", b)])
    assert sum(len(D.load_domain("ab", s)) for s in D.SPLITS) == 60
    # ready-made splits; a train item repeated in test (other id, reworded distractors)
    leak = {**a[0], "id": "leak", "choices": ["x", a[0]["choices"][0]], "answer": 1}
    a[0] = {**a[0], "answer": 0}
    train, test = _write(tmp_path / "tr.jsonl", a), _write(tmp_path / "te.jsonl", b + [leak])
    D.register_dataset("pair", {"train": train, "test": test})
    assert D.get_dataset("pair").splits() == ("train", "test")
    got = D.load_domain("pair", "train")
    assert [it["id"] for it in got] == [it["id"] for it in a[1:]]
    with pytest.raises(ValueError, match="has no 'calib' split; available: \\['train', 'test'\\]"):
        D.load_domain("pair", "calib")
    D.register_dataset(
        "pair2",
        {"train": train, "test": test},
        recipe={"train": "train[20%:100%]", "calib": "train[0%:20%]", "test": "test"},
    )
    _disjoint({s: D.load_domain("pair2", s) for s in D.SPLITS})


def test_optional_keys_and_extra_keys(tmp_path):
    rows = [{"question": "q?", "choices": ["a", "b"], "answer": 1, "extra": 3}]
    D.register_dataset("bare", {"test": _write(tmp_path / "bare.jsonl", rows)})
    (item,) = D.load_domain("bare", "test")
    assert item == {
        "id": "bare-00001",
        "question": "q?",
        "choices": ["a", "b"],
        "answer": 1,
        "context": None,
        "subject": None,
    }


def test_domain_concatenates_in_registry_order(tmp_path):
    D.register_dataset("d1", _write(tmp_path / "d1.jsonl", _items("d1", 60)), domain="toydom")
    D.register_dataset("d2", _write(tmp_path / "d2.jsonl", _items("d2", 60)), domain="toydom")
    D.register_dataset("d3", _write(tmp_path / "d3.jsonl", _items("d3", 9)), "toydom", related=True)
    assert D.DOMAINS["toydom"] == ["d1", "d2"] and D.RELATED["toydom"] == ["d3"]
    for s in D.SPLITS:
        assert D.load_domain("toydom", s) == D.load_domain("d1", s) + D.load_domain("d2", s)
    sub = D.load_domain("toydom", "train", n=10, seed=3)
    full = D.load_domain("toydom", "train")
    assert len(sub) == 10 and all(it in full for it in sub)


def test_sampling(tmp_path):
    D.register_dataset("toy", _write(tmp_path / "toy.jsonl", _items("toy", 300)))
    full = D.load_domain("toy", "train")
    a = D.load_domain("toy", "train", n=20, seed=7)
    assert a == D.load_domain("toy", "train", n=20, seed=7)
    assert a != D.load_domain("toy", "train", n=20, seed=8)
    assert len(a) == 20 and len({it["id"] for it in a}) == 20
    pos = [full.index(it) for it in a]
    assert pos == sorted(pos)  # kept in split order
    assert {it["id"] for it in a} <= {it["id"] for it in D.load_domain("toy", "train", 21, 7)}
    assert D.load_domain("toy", "train", n=len(full)) == full
    assert D.load_domain("toy", "train", n=10**6) == full
    a[0]["choices"].append("mutated")  # returned items are copies
    assert D.load_domain("toy", "train", n=20, seed=7)[0]["choices"][-1] != "mutated"


def test_sampling_ignores_hash_seed(tmp_path):
    path = _write(tmp_path / "toy.jsonl", _items("toy", 200))
    code = (
        "from trimlab import data as D\n"
        f"D.register_dataset('toy', {str(path)!r})\n"
        "print([it['id'] for it in D.load_domain('toy', 'test', n=5, seed=1)])\n"
    )
    root = Path(__file__).resolve().parents[1]
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": h, "PYTHONPATH": str(root)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for h in ("1", "2")
    }
    assert len(outs) == 1


# ------------------------------------------------------------------------- errors


def test_errors(tmp_path, monkeypatch):
    path = _write(tmp_path / "toy.jsonl", _items("toy", 50))
    D.register_dataset("toy", path)
    with pytest.raises(ValueError, match="unknown dataset or domain 'nope'.*sciq.*medical"):
        D.load_domain("nope", "test")
    with pytest.raises(ValueError, match="unknown split 'dev'.*'train', 'calib', 'test'"):
        D.load_domain("toy", "dev")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n must be a positive int"):
            D.load_domain("toy", "test", n=bad)
    with pytest.raises(ValueError, match="data dir .*missing-dir.* data_dir argument"):
        D.load_domain("sciq", "test", data_dir=tmp_path / "missing-dir")
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path / "missing-env"))
    with pytest.raises(ValueError, match="missing-env.*TRIMLAB_DATA_DIR.*does not exist"):
        D.load_domain("sciq", "test")
    with pytest.raises(ValueError, match="split file .*sciq.test\\.jsonl.* is missing"):
        D.load_domain("sciq", "test", data_dir=tmp_path)
    with pytest.raises(ValueError, match="'arc_challenge' has no 'train' split"):
        D.load_domain("arc_challenge", "train", data_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        D.domain_of("nope")
    with pytest.raises(ValueError, match="unknown domain"):
        D.dataset_names("nope")


# Bad rows and the exact problem the one validator reports (after "<where>: ").
BAD_ROWS = [
    (
        {"question": "q", "choices": ["a", "b"], "answer": 2},
        "answer index 2 out of range for 2 choices (valid: 0 to 1)",
    ),
    (
        {"question": "q", "choices": ["a", "b"], "answer": -1},
        "answer index -1 out of range for 2 choices (valid: 0 to 1)",
    ),
    (
        {"question": "q", "choices": ["a", "b"], "answer": "0"},
        "answer must be an int index into choices, got str '0'",
    ),
    (
        {"question": "q", "choices": ["a", "b"], "answer": 1.0},
        "answer must be an int index into choices, got float 1.0",
    ),
    (
        {"question": "q", "choices": ["a", "b"], "answer": True},
        "answer must be an int index into choices, got bool True",
    ),
    (
        {"question": "q", "choices": [], "answer": 0},
        "choices must be a non-empty list of strings, got list []",
    ),
    (
        {"question": "q", "choices": "ab", "answer": 0},
        "choices must be a non-empty list of strings, got str 'ab'",
    ),
    (
        {"question": "q", "choices": ["a", 1], "answer": 0},
        "choices must be a non-empty list of strings, but choices[1] is int 1",
    ),
    (
        {"question": "", "choices": ["a"], "answer": 0},
        "question must be a non-empty string, got str ''",
    ),
    (
        {"question": "  ", "choices": ["a"], "answer": 0},
        "question must be a non-empty string, got str '  '",
    ),
    (
        {"choices": ["a"], "answer": 0},
        "missing key(s) ['question'] (need question, choices, answer)",
    ),
    (
        {"question": "q", "choices": ["a"]},
        "missing key(s) ['answer'] (need question, choices, answer)",
    ),
    (
        {"question": "q", "choices": ["a"], "answer": 0, "context": 3},
        "context must be a string or None, got int 3",
    ),
    (
        {"question": "q", "choices": ["a"], "answer": 0, "subject": ["law"]},
        "subject must be a string or None, got list ['law']",
    ),
    (
        [1, 2],
        "expected a dict (JSON object) with question, choices and answer, got list [1, 2]",
    ),
]


@pytest.mark.parametrize("row, message", BAD_ROWS)
def test_bad_rows_are_rejected(tmp_path, row, message):
    good = _items("ok", 3)
    D.register_dataset("badfile", {"test": _write(tmp_path / "bad.jsonl", good + [row])})
    with pytest.raises(ValueError) as err:
        D.load_domain("badfile", "test")
    assert str(err.value) == f"{tmp_path / 'bad.jsonl'}:4: {message}"


@pytest.mark.parametrize("row, message", BAD_ROWS)
def test_evaluate_rejects_the_same_rows_with_the_same_message(tmp_path, row, message):
    """The data loader (a JSONL file, a hub row) and trimlab.evaluate share one validator."""
    D.register_dataset("badfile", {"test": _write(tmp_path / "bad.jsonl", [row])})
    with pytest.raises(ValueError) as from_file:
        D.load_domain("badfile", "test")
    good = _items("ok", 2)
    with pytest.raises(ValueError) as from_evaluate:
        validate_items([*good, row])
    with pytest.raises(ValueError) as direct:
        D.validate_item(row, "here")
    problem = schema.schema_error(row)
    assert problem == message
    assert str(from_file.value) == f"{tmp_path / 'bad.jsonl'}:1: {problem}"
    assert str(from_evaluate.value) == f"item 2: {problem}"
    assert str(direct.value) == f"here: {problem}"


def test_hub_rows_go_through_the_same_validator(monkeypatch, no_env):
    rows = [{"goal": "g", "sol1": "a", "sol2": "b", "label": 5}]
    load, _ = _fake_hub({("baber/piqa", None, "validation"): rows})
    monkeypatch.setattr(hub, "load_hf", load)
    item = hub.piqa_row(rows[0], 0, "validation")
    with pytest.raises(ValueError) as err:
        D.load_domain("piqa", "test")
    assert str(err.value) == f"baber/piqa:0: {schema.schema_error(item)}"
    with pytest.raises(ValueError, match="^item 0: answer index 5 out of range for 2 choices"):
        validate_items([item])


def test_validator_rules_beyond_json():
    """Rows that JSON cannot express: the stricter of the two old rule sets holds."""
    base = {"question": "q", "choices": ["a", "b"], "answer": 0}
    for bad, problem in [
        ({**base, "choices": ("a", "b")}, "choices must be a non-empty list of strings, got tuple"),
        ({**base, "question": b"q"}, "question must be a non-empty string, got bytes b'q'"),
        ({**base, "choices": ["a", None]}, "but choices[1] is NoneType None"),
    ]:
        match = "^item 0: .*" + re.escape(problem)
        with pytest.raises(ValueError, match=match):
            D.validate_item(bad, "item 0")
        with pytest.raises(ValueError, match=match):
            validate_items([bad])
    long = {**base, "choices": "x" * 500}
    assert len(schema.schema_error(long)) < 120  # a long bad value is cut, not dumped
    ok = {**base, "id": 7, "extra": 1, "context": "c"}
    assert D.validate_item(ok, "w") == {
        "id": "7",
        "question": "q",
        "choices": ["a", "b"],
        "answer": 0,
        "context": "c",
        "subject": None,
    }
    assert D.validate_item(base, "w")["id"] == "w"
    assert validate_items(iter([ok]))[0] is ok  # evaluate checks, it does not copy
    with pytest.raises(ValueError, match="no items"):
        validate_items([])


def test_bad_json_and_registration_errors(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"question": "q", "choices": ["a"], "answer": 0}\n{oops\n')
    D.register_dataset("broken", {"test": path})
    with pytest.raises(ValueError, match="broken.jsonl:2: invalid JSON"):
        D.load_domain("broken", "test")
    with pytest.raises(ValueError, match="does not exist"):
        D.register_dataset("ghost", tmp_path / "ghost.jsonl")
    with pytest.raises(ValueError, match="already registered"):
        D.register_dataset("sciq", path)
    with pytest.raises(ValueError, match="cannot share a name"):
        D.register_dataset("medical", path)
    with pytest.raises(ValueError, match="cannot share a name"):
        D.register_dataset("x", path, domain="sciq")
    with pytest.raises(ValueError, match="cannot share a name"):
        D.register_dataset("x", path, domain="x")
    with pytest.raises(ValueError, match="unknown source"):
        D.register_dataset("x", {"train": path}, recipe={"test": "validation"})
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        D.register_dataset("x", path, recipe={"dev": "all"})
    with pytest.raises(ValueError, match="no data file"):
        D.register_dataset("x", [])
    good = _write(tmp_path / "good.jsonl", _items("g", 3))
    D.register_dataset("sciq", good, overwrite=True, recipe={"test": "all"})
    assert len(D.load_domain("sciq", "test")) == 3
    D.unregister_dataset("broken")
    assert "broken" not in D.DATASETS


# ----------------------------------------------------- fake mirror layout (no real data)


def test_mirror_layout_with_fake_dir(tmp_path, monkeypatch):
    _write(tmp_path / "piqa" / "validation.jsonl", _items("p", 80, k=2))
    mmlu = _items("professional_law", 30) + _items("anatomy", 30) + _items("econometrics", 20)
    _write(tmp_path / "mmlu" / "validation.jsonl", mmlu[::2])
    _write(tmp_path / "mmlu" / "test.jsonl", mmlu[1::2])
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path))
    piqa = {s: D.load_domain("piqa", s) for s in D.SPLITS}
    _disjoint(piqa)
    assert sum(map(len, piqa.values())) == 80
    law = [it for s in D.SPLITS for it in D.load_domain("legal", s)]
    assert len(law) == 30 and {it["subject"] for it in law} == {"professional_law"}


# --------------------------------------------------------------- hub row mappers


def test_sciq_row_matches_convert_py():
    row = {
        "question": " What gas do plants take in? ",
        "distractor1": "oxygen",
        "distractor2": "helium",
        "distractor3": "neon",
        "correct_answer": "carbon dioxide ",
        "support": "  ",
    }
    item = D.sciq_row(row, 7, "validation")
    options = ["carbon dioxide", "oxygen", "helium", "neon"]
    random.Random("1234:sciq-validation-00007").shuffle(options)
    assert item == {
        "id": "sciq-validation-00007",
        "question": "What gas do plants take in?",
        "choices": options,
        "answer": options.index("carbon dioxide"),
        "context": None,
        "subject": None,
    }
    assert D.sciq_row({**row, "support": "Leaves."}, 7, "validation")["context"] == "Leaves."


def test_other_row_mappers():
    assert D.piqa_row({"goal": "g", "sol1": "a", "sol2": "b", "label": 1}, 3, "validation") == {
        "id": "piqa-validation-00003",
        "question": "g",
        "choices": ["a", "b"],
        "answer": 1,
        "context": None,
        "subject": None,
    }
    arc = {
        "id": "Mercury_1",
        "question": "Q?",
        "choices": {"text": ["w", "x", "y"], "label": ["1", "2", "3"]},
        "answerKey": "3",
    }
    assert D.arc_row(arc, 0, "test")["answer"] == 2
    assert D.arc_row(arc, 0, "test")["id"] == "Mercury_1"
    med = {"id": "u1", "question": "M?", "opa": "a", "opb": "b", "opc": "c", "opd": "d"}
    med |= {"cop": 3, "subject_name": "Anatomy", "exp": "..."}
    assert D.medmcqa_row(med, 0, "validation") == {
        "id": "medmcqa-u1",
        "question": "M?",
        "choices": ["a", "b", "c", "d"],
        "answer": 3,
        "context": None,
        "subject": "Anatomy",
    }
    mm = {"question": "L?", "subject": "jurisprudence", "choices": list("abcd"), "answer": 2}
    assert D.mmlu_row(mm, 4, "test", "jurisprudence")["id"] == "mmlu-jurisprudence-test-0004"
    assert D.mmlu_row({**mm, "subject": ""}, 4, "test", "econometrics")["subject"] == "econometrics"
    pq = {
        "pubid": 123,
        "question": "Does it?",
        "context": {"contexts": [" A. ", "B."], "labels": ["x", "y"]},
        "long_answer": "...",
        "final_decision": "maybe",
    }
    assert D.pubmedqa_row(pq, 0, "train") == {
        "id": "pubmedqa-123",
        "question": "Does it?",
        "choices": ["yes", "no", "maybe"],
        "answer": 2,
        "context": "A.\nB.",
        "subject": None,
    }


def test_pubmedqa_official_split_shape():
    items = [D.make_item(f"p{i}", f"q{i}", D.PUBMEDQA_CHOICES, i % 3, "ctx") for i in range(101)]
    out = D.pubmedqa_official_split(items)
    assert len(out["train"]) == len(out["test"]) + 1 or len(out["train"]) == len(out["test"]) - 1
    assert sorted(it["id"] for it in out["train"] + out["test"]) == sorted(i["id"] for i in items)
    assert [items.index(it) for it in out["test"]] == sorted(items.index(it) for it in out["test"])
    assert out == D.pubmedqa_official_split(items)


def _fake_hub(rows_by_split: dict):
    calls = []

    def load(path, config, split):
        calls.append((path, config, split))
        return rows_by_split[(path, config, split)]

    return load, calls


def test_hub_path_uses_recipe(tmp_path, monkeypatch, no_env):
    rows = [
        {"goal": f"goal {i}", "sol1": f"a{i}", "sol2": f"b{i}", "label": i % 2} for i in range(60)
    ]
    load, calls = _fake_hub({("baber/piqa", None, "validation"): rows})
    monkeypatch.setattr(hub, "load_hf", load)
    got = {s: D.load_domain("piqa", s) for s in D.SPLITS}
    _disjoint(got)
    assert sum(map(len, got.values())) == 60
    assert calls == [("baber/piqa", None, "validation")]  # loaded once, then cached
    # the same rows in a local file give the same split (same recipe, same hash)
    items = [D.piqa_row(r, i, "validation") for i, r in enumerate(rows)]
    D.register_dataset("local_piqa", _write(tmp_path / "piqa.jsonl", items))
    for s in D.SPLITS:
        assert D.load_domain("local_piqa", s) == got[s]


def test_hub_failure_is_clear(monkeypatch, no_env):
    def offline(path, config, split):
        raise ConnectionError("no network")

    monkeypatch.setattr(hub, "load_hf", offline)
    with pytest.raises(
        RuntimeError, match="'medmcqa'.*openlifescienceai/medmcqa.*TRIMLAB_DATA_DIR"
    ):
        D.load_domain("medical", "test")


# ------------------------------------------------------------------ the real mirror


@mirror
@pytest.mark.parametrize("name", list(SIZES))
def test_mirror_splits(name):
    splits = {s: D.load_domain(name, s) for s in D.DATASETS[name].splits()}
    assert {s: len(v) for s, v in splits.items()} == SIZES[name]
    _disjoint(splits)
    for items in splits.values():
        _schema(items)
    assert D.load_domain(name, "test", n=5, seed=1) == D.load_domain(name, "test", n=5, seed=1)
    ctx = [it for it in splits["test"] if it["context"]]
    assert bool(ctx) == D.DATASETS[name].has_context
    if ctx:
        assert build_prompt(ctx[0]).startswith(ctx[0]["context"][:20])


@mirror
def test_mirror_subjects_and_domains():
    law = D.load_domain("legal", "test")
    assert {it["subject"] for it in law} == set(D.MMLU_LAW)
    econ = D.load_domain("finance", "train")
    assert {it["subject"] for it in econ} == set(D.MMLU_ECON)
    both = D.load_domain("commonsense", "calib")
    assert both == D.load_domain("piqa", "calib") + D.load_domain("arc_easy", "calib")


def _raw_hub_rows(raw: Path) -> dict:
    """Hub-shaped rows rebuilt from the mirror's raw files (for a hub/mirror parity check)."""
    rows: dict = {}
    with zipfile.ZipFile(raw / "sciq" / "SciQ.zip") as z:
        for src, hub in (("valid", "validation"), ("test", "test")):
            rows[("allenai/sciq", None, hub)] = json.loads(z.read(f"SciQ dataset-2 3/{src}.json"))
    goals = [json.loads(x) for x in (raw / "piqa" / "valid.jsonl").read_text().splitlines()]
    labels = (raw / "piqa" / "valid-labels.lst").read_text().split()
    rows[("baber/piqa", None, "validation")] = [
        {**g, "label": int(lab)} for g, lab in zip(goals, labels, strict=True)
    ]
    for split in ("train", "validation", "test"):
        text = (raw / "arc" / "arc_easy_hf" / f"{split}.json").read_text()
        rows[("allenai/ai2_arc", "ARC-Easy", split)] = json.loads(text)
    for subject in D.MMLU_LAW + D.MMLU_ECON:
        for src, hub in (("val", "validation"), ("test", "test")):
            with open(
                raw / "mmlu" / src / f"{subject}_{src}.csv", encoding="utf-8", newline=""
            ) as f:
                rows[("cais/mmlu", subject, hub)] = [
                    {
                        "question": r[0],
                        "subject": subject,
                        "choices": r[1:5],
                        "answer": "ABCD".index(r[5]),
                    }
                    for r in csv.reader(f)
                ]
    pqal = json.loads((raw / "pubmedqa" / "ori_pqal.json").read_text())
    rows[("qiaojin/PubMedQA", "pqa_labeled", "train")] = [
        {
            "pubid": int(pmid),
            "question": d["QUESTION"],
            "context": {"contexts": d["CONTEXTS"]},
            "final_decision": d["final_decision"],
        }
        for pmid, d in pqal.items()
    ]
    return rows


@mirror
def test_hub_path_matches_mirror(monkeypatch):
    """Hub rows (rebuilt from the raw files) give exactly the mirror's splits."""
    raw = Path(MIRROR) / "raw"
    if not (raw / "pubmedqa" / "ori_pqal.json").is_file():
        pytest.skip("mirror has no raw/ folder")
    load, _ = _fake_hub(_raw_hub_rows(raw))
    monkeypatch.setattr(hub, "load_hf", load)
    monkeypatch.delenv(D.DATA_ENV)
    checks = [("sciq", "calib"), ("sciq", "test"), ("piqa", None), ("arc_easy", None)]
    checks += [("mmlu_law", None), ("mmlu_econ", None), ("pubmedqa", None)]
    for name, only in checks:
        for split in [only] if only else D.DATASETS[name].splits():
            from_hub = D.load_domain(name, split)
            assert from_hub == D.load_domain(name, split, data_dir=MIRROR), (name, split)
