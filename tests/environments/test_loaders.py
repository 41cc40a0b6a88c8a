"""APPS and LiveCodeBench loaders on local files in the raw hub formats, built from ``../shared/data``."""

from __future__ import annotations

import base64
import json
import os
import pickle
import zlib
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from fst_agent.env.data.apps import load_apps
from fst_agent.env.data.hub import DatasetLoadError, select_split, split_of
from fst_agent.env.data.livecodebench import (
    decode_private_tests,
    load_livecodebench,
    release_files,
    safe_unpickle,
)
from fst_agent.env.data.problems import count_public_only, problem_from_row
from tests.environments.rawdata import (
    apps_raw_row,
    encode_private,
    lcb_raw_row,
    read_jsonl,
    write_jsonl,
    write_parquet,
)

# ---------------------------------------------------------------------------------------------------
# Fixtures: raw-format copies of the shared data
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def apps_rows(shared_data: Path) -> list[dict]:
    return read_jsonl(shared_data / "apps.jsonl")


@pytest.fixture(scope="module")
def lcb_rows(shared_data: Path) -> list[dict]:
    return read_jsonl(shared_data / "lcb.jsonl")


NO_TESTS_ROW = {"problem_id": 9999, "question": "q", "solutions": "", "input_output": "", "difficulty": "interview",
                "url": "", "starter_code": ""}
BAD_IO_ROW = {"problem_id": 9998, "question": "q", "solutions": "", "input_output": "{not json",
              "difficulty": "interview", "url": "", "starter_code": ""}


@pytest.fixture(scope="module")
def apps_dirs(apps_rows, tmp_path_factory) -> dict[str, Path]:
    """The same APPS rows as a Parquet mirror (data/{split}-00000-of-00001.parquet) and as the dataset
    repo's train.jsonl/test.jsonl; train gets a row without tests and a malformed row at its end."""
    root = tmp_path_factory.mktemp("apps")
    train = [apps_raw_row(r) for r in apps_rows if r["split"] == "train"]
    test = [apps_raw_row(r) for r in apps_rows if r["split"] == "test"]
    parquet, jsonl = root / "parquet", root / "jsonl"
    write_parquet(parquet / "data" / "train-00000-of-00001.parquet", [*train, NO_TESTS_ROW, BAD_IO_ROW])
    write_parquet(parquet / "data" / "test-00000-of-00001.parquet", test)
    write_jsonl(jsonl / "train.jsonl", [*train, NO_TESTS_ROW, BAD_IO_ROW, "{this line is not json"])
    write_jsonl(jsonl / "test.jsonl", test)
    return {"parquet": parquet, "jsonl": jsonl, "n_train": len(train), "n_test": len(test)}  # type: ignore[dict-item]


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_private(marker: Path) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(_Evil(marker)))).decode("ascii")


@pytest.fixture(scope="module")
def lcb_dir(lcb_rows, tmp_path_factory) -> dict:
    """test.jsonl (contests before October 2023), test2.jsonl (the rest), test3.jsonl (one good row and
    three bad ones: invalid JSON, a malicious pickle, a missing field). Private tests are compressed
    pickles in every other row, JSON strings in the rest."""
    root = tmp_path_factory.mktemp("lcb")
    first = [r for r in lcb_rows if r["contest_date"] < "2023-10-01"]
    second = [r for r in lcb_rows if r["contest_date"] >= "2023-10-01"]
    write_jsonl(root / "test.jsonl", [lcb_raw_row(r, compress=i % 2 == 0) for i, r in enumerate(first)])
    write_jsonl(root / "test2.jsonl", [lcb_raw_row(r, compress=i % 2 == 1) for i, r in enumerate(second)])
    extra = lcb_raw_row({**lcb_rows[0], "question_id": "9001", "contest_date": "2024-05-01T00:00:00"}, compress=True)
    marker = root / "pwned"
    evil = {**lcb_raw_row(lcb_rows[1], compress=True), "question_id": "9002", "private_test_cases": _evil_private(marker)}
    missing = {k: v for k, v in lcb_raw_row(lcb_rows[2], compress=False).items() if k != "question_content"}
    write_jsonl(root / "test3.jsonl", ["{oops", evil, missing, extra])
    return {"root": root, "first": first, "second": second, "marker": marker}


# ---------------------------------------------------------------------------------------------------
# APPS
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["parquet", "jsonl"])
def test_apps_raw_files_load_like_the_normalized_rows(layout, apps_dirs, apps_rows):
    report = load_apps(apps_dirs[layout], split="train", log=False)
    assert len(report.problems) == apps_dirs["n_train"]
    assert report.without_tests == 1
    bad_rows = {e.line: e.reason for e in report.skipped}
    n = apps_dirs["n_train"]
    expected_bad = {n + 2} | ({n + 3} if layout == "jsonl" else set())
    assert set(bad_rows) == expected_bad, bad_rows
    assert "JSON" in bad_rows[n + 2]
    expected = {r["id"]: problem_from_row(r) for r in apps_rows if r["split"] == "train"}
    for problem in report.problems:
        want = expected[problem.id]  # ids are apps-train-0001 & co., as in the shared data
        assert problem.tests == want.tests and problem.fn_name == want.fn_name
        assert problem.solutions == want.solutions and problem.difficulty == want.difficulty
    assert any(p.fn_name for p in report.problems), "call-based problems keep their fn_name"
    assert report.public_only == count_public_only(list(expected.values()))


def test_apps_splits_difficulties_and_errors(apps_dirs, apps_rows, tmp_path):
    assert len(load_apps(apps_dirs["parquet"], split="test", log=False).problems) == apps_dirs["n_test"]
    both = load_apps(apps_dirs["jsonl"], split="all", log=False)
    assert len(both.problems) == len(apps_rows)
    assert {p.id.split("-")[1] for p in both.problems} == {"train", "test"}
    intro = load_apps(apps_dirs["parquet"], split="train", difficulties=["Introductory"], log=False)
    assert {p.difficulty for p in intro.problems} == {"introductory"}
    assert len(intro.problems) == sum(1 for r in apps_rows if r["split"] == "train" and r["difficulty"] == "introductory")
    assert intro.filtered_out > 0
    with pytest.raises(ValueError, match="unknown APPS difficulty hard .*known: competition, interview, introductory"):
        load_apps(apps_dirs["parquet"], difficulties=["hard"], log=False)
    with pytest.raises(DatasetLoadError, match="no such file or directory"):
        load_apps(tmp_path / "nowhere", log=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetLoadError, match="no train .parquet or .jsonl files"):
        load_apps(tmp_path / "empty", log=False)
    # a single normalized file (the shared data itself) loads too
    assert len(load_apps(apps_dirs["jsonl"] / "test.jsonl", split="test", log=False).problems) == apps_dirs["n_test"]


def test_apps_load_logs_counts_including_public_only(apps_dirs):
    with capture_logs() as logs:
        report = load_apps(apps_dirs["jsonl"], split="train")
    loaded = [e for e in logs if e["event"] == "data.loaded"]
    assert loaded and loaded[0]["public_only"] == report.public_only > 0
    assert loaded[0]["malformed_skipped"] == 2 and loaded[0]["without_tests_skipped"] == 1
    skipped = [e for e in logs if e["event"] == "data.row_skipped"]
    assert {e["row"] for e in skipped} == {apps_dirs["n_train"] + 2, apps_dirs["n_train"] + 3}
    assert "2 malformed rows skipped, 1 without tests skipped" in report.summary()


def test_apps_from_the_hub_uses_hf_hub_download(apps_dirs, monkeypatch):
    import huggingface_hub

    root = apps_dirs["parquet"]
    asked: list[tuple[str, str, str | None]] = []

    def fake_list(self, repo_id, *, revision=None, repo_type=None, token=None):
        assert repo_type == "dataset"
        return ["README.md", "data/test-00000-of-00001.parquet", "data/train-00000-of-00001.parquet"]

    def fake_download(repo_id, filename, *, repo_type=None, revision=None, **kw):
        asked.append((repo_id, filename, repo_type))
        return str(root / filename)

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", fake_list)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    report = load_apps("metr-evals/apps", split="test", log=False)
    assert asked == [("metr-evals/apps", "data/test-00000-of-00001.parquet", "dataset")]
    assert len(report.problems) == apps_dirs["n_test"]


def test_a_named_hub_dataset_that_cannot_load_is_an_error_naming_it(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(DatasetLoadError, match="cannot load dataset 'someone/no-such-apps'"):
        load_apps("someone/no-such-apps", log=False)
    with pytest.raises(DatasetLoadError, match="cannot load dataset 'livecodebench/code_generation_lite'.*test.jsonl"):
        load_livecodebench(release="release_v1", log=False)


# ---------------------------------------------------------------------------------------------------
# LiveCodeBench
# ---------------------------------------------------------------------------------------------------


def test_release_tags_map_onto_the_hub_files():
    assert release_files("release_v1") == ["test.jsonl"]
    assert release_files("release_v3") == ["test.jsonl", "test2.jsonl", "test3.jsonl"]
    assert release_files("release_latest") == release_files("release_v6")
    assert release_files("v2") == ["test2.jsonl"]
    assert release_files("v1_v3") == ["test.jsonl", "test2.jsonl", "test3.jsonl"]
    assert release_files("v4_v5") == ["test4.jsonl", "test5.jsonl"]
    for bad in ("release_v7", "v3_v1", "latest", "v0"):
        with pytest.raises(ValueError, match="unknown LiveCodeBench release"):
            release_files(bad)


def test_lcb_releases_select_files_and_private_tests_decode(lcb_dir, lcb_rows):
    root = lcb_dir["root"]
    v1 = load_livecodebench(root, release="release_v1", log=False)
    assert len(v1.problems) == len(lcb_dir["first"]) and not v1.skipped
    v2 = load_livecodebench(root, release="release_v2", log=False)
    assert len(v2.problems) == len(lcb_rows)
    only2 = load_livecodebench(root, release="v2", log=False)
    assert {p.id for p in only2.problems} == {r["id"] for r in lcb_dir["second"]}
    expected = {r["id"]: problem_from_row(r) for r in lcb_rows}
    for problem in v2.problems:  # ids, fn_name from metadata, public + decoded private tests
        want = expected[problem.id]
        assert problem.tests == want.tests, problem.id
        assert problem.fn_name == want.fn_name and problem.contest_date == want.contest_date
    with_private = [p for p in v2.problems if not p.public_only]
    assert {p.id for p in with_private} == {r["id"] for r in lcb_rows if r["private_tests_included"]}
    assert v2.public_only == len(lcb_rows) - len(with_private)
    with pytest.raises(DatasetLoadError, match="release release_v4 needs test4.jsonl, missing"):
        load_livecodebench(root, release="release_v4", log=False)


def test_lcb_malformed_rows_are_reported_and_a_malicious_pickle_is_refused(lcb_dir, lcb_rows):
    report = load_livecodebench(lcb_dir["root"], release="v3", log=False)
    assert [p.id for p in report.problems] == [f"lcb-{lcb_rows[0]['platform']}-9001"]
    reasons = {e.line: e.reason for e in report.skipped}
    assert set(reasons) == {1, 2, 3}
    assert "invalid JSON" in reasons[1]
    assert "UnpicklingError" in reasons[2] and "refusing to load posix.system" in reasons[2]
    assert "question_content" in reasons[3]
    assert not lcb_dir["marker"].exists(), "the malicious pickle must never run"


def test_lcb_date_window_platform_and_difficulty(lcb_dir, lcb_rows):
    report = load_livecodebench(lcb_dir["root"], release="release_v2", start_date="2023-07-01",
                                end_date="2023-08-31", log=False)
    want = [r for r in lcb_rows if "2023-07-01" <= r["contest_date"][:10] <= "2023-08-31"]
    assert {p.id for p in report.problems} == {r["id"] for r in want}
    assert report.filtered_out == len(lcb_rows) - len(want)
    lc_easy = load_livecodebench(lcb_dir["root"], release="release_v2", platforms=["leetcode"],
                                 difficulties=["easy"], log=False)
    assert lc_easy.problems and all(p.platform == "leetcode" and p.difficulty == "easy" for p in lc_easy.problems)
    with pytest.raises(ValueError, match="empty date window"):
        load_livecodebench(lcb_dir["root"], start_date="2024-01-02", end_date="2024-01-01", log=False)
    # the normalized shared file loads as one file
    assert len(load_livecodebench(lcb_dir["root"] / "test.jsonl", log=False).problems) == len(lcb_dir["first"])


def test_lcb_from_the_hub_downloads_the_release_files(lcb_dir, monkeypatch):
    import huggingface_hub

    asked: list[str] = []

    def fake_download(repo_id, filename, *, repo_type=None, revision=None, **kw):
        assert (repo_id, repo_type) == ("livecodebench/code_generation_lite", "dataset")
        asked.append(filename)
        return str(lcb_dir["root"] / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    report = load_livecodebench(release="release_v2", log=False)
    assert asked == ["test.jsonl", "test2.jsonl"] and report.problems


def test_the_restricted_unpickler_refuses_every_class(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.system"):
        safe_unpickle(pickle.dumps(_Evil(marker)))
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        safe_unpickle(pickle.dumps(eval))
    with pytest.raises(pickle.UnpicklingError):
        decode_private_tests(_evil_private(marker))
    assert not marker.exists()
    # plain data still loads, in every protocol
    data = [{"input": "1\n", "output": "2\n", "testtype": "stdin"}]
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        blob = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(data), protocol=protocol))).decode()
        assert decode_private_tests(blob) == data
    assert decode_private_tests(encode_private(data)) == data
    assert decode_private_tests(json.dumps(data)) == data and decode_private_tests("") == []
    with pytest.raises(ValueError, match="neither JSON nor base64"):
        decode_private_tests("%%% not base64 %%%")


# ---------------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------------


def test_splits_are_deterministic_hash_splits(apps_dirs):
    # pinned: the same id lands in the same split on every run and machine
    assert [split_of(f"apps-train-{i:04d}", seed=0, validation_fraction=0.5) for i in range(10)] == [
        "train", "validation", "train", "validation", "train", "train", "validation", "train", "validation", "train"
    ]
    ids = [f"problem-{i}" for i in range(2000)]
    val = [i for i in ids if split_of(i, seed=0, validation_fraction=0.1) == "validation"]
    assert 150 < len(val) < 250
    assert val != [i for i in ids if split_of(i, seed=1, validation_fraction=0.1) == "validation"]
    problems = load_apps(apps_dirs["jsonl"], split="train", log=False).problems
    train = select_split(problems, "train", seed=3, validation_fraction=0.2)
    valid = select_split(problems, "eval", seed=3, validation_fraction=0.2)
    assert {p.id for p in train}.isdisjoint({p.id for p in valid})
    assert len(train) + len(valid) == len(problems) and valid
    # the split of a problem does not depend on what else was loaded
    assert [p.id for p in select_split(problems[:40], "validation", seed=3, validation_fraction=0.2)] == [
        p.id for p in valid if p in problems[:40]
    ]
    with pytest.raises(ValueError, match="unknown split"):
        select_split(problems, "dev")

