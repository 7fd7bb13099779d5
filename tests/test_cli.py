"""The command line: certify writes Cohen's TSV, resumes after a kill, reports errors clearly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from helpers import certificates

from rsrouter.cli import main
from rsrouter.results.rows import COHEN_COLUMNS
from rsrouter.results.tsv import read_tsv

CERTIFY = ["certify", "--dataset", "digits", "--n0", "20", "--n", "400", "--alpha", "0.01",
           "--batch-size", "500", "--skip", "5", "--max", "300", "--no-progress"]


def test_certify_writes_cohen_columns_then_counts(digits_expert, tmp_path, capsys):
    out = tmp_path / "cert.tsv"
    assert main([*CERTIFY, "--model", digits_expert, "--out", str(out)]) == 0
    df = read_tsv(out)
    assert list(df.columns[:6]) == list(COHEN_COLUMNS)
    assert {"cA", "nA", "n", "n0", "sigma", "alpha", "mode"} <= set(df.columns)
    assert df["idx"].tolist() == list(range(0, 300, 5))
    assert ((df["predict"] == -1) == (df["radius"] == 0)).all()
    assert (df["correct"] == ((df["predict"] == df["label"]) & (df["predict"] != -1))).all()
    assert (df["n"] == 400).all() and (df["sigma"] == 0.25).all()
    assert "ACR" in capsys.readouterr().out


def test_killed_certify_resumes_to_the_same_tsv(digits_expert, tmp_path):
    straight = tmp_path / "straight.tsv"
    assert main([*CERTIFY, "--model", digits_expert, "--out", str(straight)]) == 0
    resumed = tmp_path / "resumed.tsv"
    cmd = [sys.executable, "-m", "rsrouter.cli.app", *CERTIFY, "--batch-size", "20",
           "--model", digits_expert, "--out", str(resumed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it once a few rows are on disk
        if resumed.exists() and resumed.read_text().count("\n") > 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows_at_kill = resumed.read_text().count("\n") - 1
    assert 0 < rows_at_kill < 60, "the run was not interrupted mid-way"
    with open(resumed, "a") as f:  # and a torn last line, as a crash mid-write leaves
        f.write("999\t3\t")
    assert main([*CERTIFY, "--model", digits_expert, "--out", str(resumed)]) == 0
    pd.testing.assert_frame_equal(certificates(straight), certificates(resumed))


def test_rerun_with_other_settings_is_refused(digits_expert, tmp_path, capsys):
    out = tmp_path / "c.tsv"
    assert main([*CERTIFY, "--model", digits_expert, "--out", str(out)]) == 0
    assert main([*CERTIFY, "--n", "500", "--model", digits_expert, "--out", str(out)]) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--alpha", "1.5"], "--alpha: must be in (0, 1), got 1.5"),
    (["--alpha", "2"], "--alpha: must be in (0, 1)"),
    (["--n0", "0"], "--n0/--N0: must be >= 1, got 0"),
    (["--n", "-5"], "--n/--N: must be >= 1"),
    (["--batch-size", "0"], "--batch-size: must be >= 1"),
    (["--skip", "0"], "--skip: must be >= 1"),
    (["--sigma", "-0.5"], "--sigma: must be > 0"),
    (["--alpha-split", "1"], "--alpha-split: must be in (0, 1)"),
    (["--device", "gpu"], "--device: must be auto, cpu, cuda, cuda:N or mps"),
])
def test_a_typo_never_poisons_an_output_file(digits_expert, tmp_path, capsys, extra, message):
    out = tmp_path / "x.tsv"
    assert main([*CERTIFY, *extra, "--model", digits_expert, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written: the corrected rerun starts clean
    assert main([*CERTIFY, "--model", digits_expert, "--out", str(out)]) == 0


@pytest.mark.parametrize("command", [
    ["experts", "train", "--dataset", "digits", "--arch", "cnn_tiny", "--sigma", "0.25",
     "--epochs", "0", "--out", "OUT"],
    ["experts", "train", "--dataset", "digits", "--arch", "cnn_tiny", "--sigma", "0",
     "--out", "OUT"],
    ["experts", "certify-card", "FOLDER", "--alpha", "0", "--out", "OUT"],
    ["router", "train", "--config", "CFG", "--out", "OUT"],
])
def test_other_writing_commands_validate_before_writing(digits_expert, tmp_path, capsys,
                                                        command):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("experts: [a, b]\ndata: {dataset: digits}\nlabels: {alpha: 2}\n")
    out = tmp_path / "out"
    args = [{"OUT": str(out), "CFG": str(cfg), "FOLDER": digits_expert}.get(a, a)
            for a in command]
    assert main(args) == 2
    assert "must be" in capsys.readouterr().err
    assert not out.exists()


def test_expert_dataset_mismatch(digits_expert, tmp_path, capsys):
    args = [*CERTIFY, "--model", digits_expert, "--out", str(tmp_path / "x.tsv")]
    args[args.index("digits")] = "fashion-mnist"
    assert main(args) == 2
    assert "expects 10 classes of input size [1, 8, 8]" in capsys.readouterr().err


def test_missing_dataset(digits_expert, tmp_path, capsys, monkeypatch):
    from rsrouter import data

    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "none")
    monkeypatch.delenv("RSROUTER_DATA", raising=False)
    args = [*CERTIFY, "--model", digits_expert, "--out", str(tmp_path / "x.tsv")]
    args[args.index("digits")] = "fashion-mnist"
    assert main(args) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


def test_missing_expert_folder(tmp_path, capsys):
    assert main([*CERTIFY, "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "neither a registered expert name" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), "rsrouter")
    out = subprocess.run([exe if os.path.exists(exe) else "rsrouter", "--version"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.startswith("rsrouter ")


def test_cli_start_up_imports_no_torch(tmp_path):
    """--help, --version, experts list/show and argument errors answer without torch (measured
    in benchmarks/perf_startup.py)."""
    code = (
        "import sys\n"
        "from rsrouter.cli import main\n"
        "assert 'torch' not in sys.modules\n"
        "for argv in (['--version'], ['--help'], ['experts', 'list'],\n"
        "             ['experts', 'show', 'digits-sigma0.25'],\n"
        "             ['certify', '--model', 'x', '--dataset', 'digits', '--alpha', '2',\n"
        "              '--out', 'x.tsv']):\n"
        "    main(argv)\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'pandas', 'scipy', 'huggingface_hub')\n"
        "               if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "digits-sigma0.25" in done.stdout and not (tmp_path / "x.tsv").exists()


def test_sigma_above_one_is_a_one_line_warning(digits_expert, tmp_path, capsys):
    out = tmp_path / "x.tsv"
    assert main([*CERTIFY, "--sigma", "64", "--max", "10", "--model", digits_expert,
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    warned = [line for line in err if "above 1" in line]
    assert warned == ["rsrouter: warning: --sigma 64 is above 1, but sigma is in pixel units of "
                      "inputs in [0, 1]; on the 0-255 scale that is 0.251 (see docs/experts.md)"]
    assert not any("warnings.warn" in line or ".py:" in line for line in err)


def test_remove_is_symmetric_with_register(capsys, tmp_path):
    import shutil

    from rsrouter.paths import PROJECT_REGISTRY
    from rsrouter.registry.core import Registry

    before = PROJECT_REGISTRY.read_text()
    assert main(["experts", "remove", "digits-sigma0.25"]) == 2
    assert "--project" in capsys.readouterr().err
    assert PROJECT_REGISTRY.read_text() == before
    project = tmp_path / "registry.yaml"
    shutil.copy(PROJECT_REGISTRY, project)
    registry = Registry(project_file=project)
    registry.remove("digits-sigma0.25", project=True)
    assert "digits-sigma0.25" not in registry.entries()


def test_a_trained_expert_card_names_itself(tmp_path):
    import json

    from rsrouter.bench.expert_runs import every_nth

    out = tmp_path / "my-expert"
    assert main(["experts", "train", "--dataset", "digits", "--arch", "cnn_tiny", "--sigma",
                 "0.25", "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "config.json").read_text())["rs_expert"]["name"] == "my-expert"
    readme = (out / "README.md").read_text()
    assert 'load_expert("my-expert")' in readme
    assert "rsrouter experts register path/to/this/folder --name my-expert" in readme
    assert main(["experts", "register", str(out), "--name", "my-expert"]) == 0
    from rsrouter import load_expert

    assert load_expert("my-expert").name == "my-expert"  # the card's snippet works
    assert [every_nth(k) for k in (1, 2, 3, 11, 20, 21, 22)] == [
        "every test image", "every 2nd test image", "every 3rd test image",
        "every 11th test image", "every 20th test image", "every 21st test image",
        "every 22nd test image"]


def test_tables_and_plots(digits_expert, tmp_path, capsys):
    from rsrouter.results.curves import curves_figure, markdown_table, summary_table

    out = tmp_path / "c.tsv"
    assert main([*CERTIFY, "--model", digits_expert, "--out", str(out)]) == 0
    table = summary_table({"a": read_tsv(out)})
    assert table["inputs"].tolist() == [60] and "| 60 |" in markdown_table(table)
    assert "60.0" not in capsys.readouterr().out.splitlines()[-1]
    perfect = pd.DataFrame({"idx": [0], "label": [1], "predict": [1], "radius": [1.0],
                            "correct": [1], "time": [0.0]})
    fig = curves_figure({"perfect": perfect, "oracle": perfect}, baselines=["oracle"])
    ax = fig.axes[0]
    assert ax.get_ylim()[1] > 100  # a curve at 100% is not hidden by the frame
    assert [line.get_linestyle() for line in ax.get_lines()] == ["-", "--"]


def test_a_missing_cuda_device_is_one_clear_line(digits_expert, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "x.tsv"
    assert main([*CERTIFY, "--device", "cuda:1", "--model", digits_expert, "--out", str(out)]) == 2
    assert "--device cuda:1: this machine has 0 CUDA device(s)" in capsys.readouterr().err
    assert not out.exists()


def test_one_trainer_per_output_folder(tmp_path):
    from rsrouter.errors import LockedError
    from rsrouter.files import FileLock
    from rsrouter.training.expert import TrainConfig, train_expert

    out = tmp_path / "e"
    with FileLock(out.resolve() / ".lock"):  # as another process training into it would
        with pytest.raises(LockedError, match="in use by pid"):
            train_expert(TrainConfig("digits", "cnn_tiny", 0.25, epochs=1), out, progress=False)
    train_expert(TrainConfig("digits", "cnn_tiny", 0.25, epochs=1), out, progress=False)
    assert (out / "model.safetensors").is_file() and not (out / ".lock").exists()


def test_the_parsers_certificates_are_the_cards():
    from rsrouter.cards.router import CERTIFICATES
    from rsrouter.cli.common import CERTIFICATES as PARSER

    assert PARSER == CERTIFICATES
