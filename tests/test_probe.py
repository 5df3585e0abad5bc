"""``zoengine probe``: labelled, positive memory figures for the tiny model; one-line errors."""

from __future__ import annotations

import json

import pytest

from zoengine.cli import main
from zoengine.config import RunConfig
from zoengine.errors import ZOError
from zoengine.probe import format_table, probe


def _cfg(model_dir, adapter="lora"):
    cfg = RunConfig()
    cfg.set("model.name", str(model_dir))
    cfg.set("model.device", "cpu")
    cfg.set("adapter.method", adapter)
    return cfg.validate()


def test_probe_measures_every_phase_with_labels(tiny_llama_dir):
    result = probe(_cfg(tiny_llama_dir), batch=2, seq=8)
    labels = [r.label for r in result.rows]
    assert any(lab.startswith("weights") for lab in labels)
    assert any(lab.startswith("inference forward") for lab in labels)
    assert any(lab.startswith("ZO step") for lab in labels)
    assert any(lab.startswith("first-order step") for lab in labels)
    for row in result.rows:
        assert row.peak_bytes > 0 and row.above_weights >= 0 and row.what
    assert result.trainable > 0 and result.total > result.trainable
    assert result.available_bytes and result.available_bytes > 0
    assert result.fits == {"zo": True, "first_order": True}  # a tiny model fits anywhere
    text = format_table(result)
    assert "ZO step" in text and "recommend:" in text and "RSS" in text


def test_probe_cli_prints_table_and_json(tiny_llama_dir, capsys):
    assert main(["probe", str(tiny_llama_dir), "--device", "cpu", "--batch", "2", "--seq", "4"]) == 0
    out = capsys.readouterr().out
    assert "first-order step" in out and "available:" in out
    assert (
        main(
            [
                "probe",
                str(tiny_llama_dir),
                "--device",
                "cpu",
                "--adapter",
                "full",
                "--batch",
                "1",
                "--seq",
                "4",
                "--json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["adapter"] == "full" and len(data["rows"]) == 5 and data["recommendation"]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--batch", "0"], "--batch"),
        (["--seq", "x"], "--seq"),
        (["--adapter", "nope"], "adapter.method"),
        (["--device-map", "everywhere"], "model.device_map"),
        (["--device", "tpu"], "model.device"),
    ],
)
def test_probe_bad_input_is_one_line(tiny_llama_dir, capsys, argv, needle):
    assert main(["probe", str(tiny_llama_dir), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err and "\n" not in err


def test_probe_missing_model_is_one_line(tmp_path, capsys):
    assert main(["probe", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.name" in err and "\n" not in err


def test_probe_function_rejects_bad_sizes(tiny_llama_dir):
    with pytest.raises(ZOError):
        probe(_cfg(tiny_llama_dir), batch=0, seq=4)
