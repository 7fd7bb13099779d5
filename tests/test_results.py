"""Results files: what a reader refuses, one writer at a time, and resuming from any torn state."""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from helpers import certificates

from rsrouter.cli import main
from rsrouter.errors import CountsError, LockedError, ResultsError, ResumeError
from rsrouter.protocol import Protocol
from rsrouter.results.rows import COHEN_COLUMNS
from rsrouter.results.tsv import ResumableTSV, read_tsv

CERTIFY = ["certify", "--dataset", "digits", "--n0", "20", "--n", "400", "--alpha", "0.01",
           "--batch-size", "500", "--skip", "25", "--max", "300", "--no-progress"]


@pytest.fixture
def certified(digits_expert, tmp_path) -> pd.DataFrame:
    out = tmp_path / "c.tsv"
    assert main([*CERTIFY, "--model", digits_expert, "--out", str(out)]) == 0
    return pd.read_csv(out, sep="\t")


def _write(df: pd.DataFrame, path) -> str:
    df.to_csv(path, sep="\t", index=False)
    return str(path)


@pytest.mark.parametrize("change, message", [
    (lambda df: df.assign(nA=df["n"] + 1), r"row 1 \(idx 0\).*impossible counts.*nA=401"),
    (lambda df: df.assign(n0=0), "n0=0"),
    (lambda df: df.assign(alpha=1.5), "alpha=1.5"),
    (lambda df: pd.concat([df, df.iloc[[2]]]), "listed more than once"),
    (lambda df: df.assign(radius=df["radius"].where(df["radius"] == 0, df["radius"] + 0.1)),
     "does not follow from its counts"),
    (lambda df: df.assign(correct=1 - df["correct"]), "correct must be 1 exactly when"),
])
def test_a_forged_or_corrupt_row_is_named(certified, tmp_path, change, message):
    with pytest.raises((ResultsError, CountsError), match=message):
        read_tsv(_write(change(certified), tmp_path / "bad.tsv"))


def test_files_that_are_not_certification_tsvs(certified, tmp_path, capsys):
    settings = tmp_path / "c.tsv.json"
    settings.write_text(json.dumps({"n": 400}))
    with pytest.raises(ResultsError, match="not a certification TSV"):
        read_tsv(settings)
    assert main(["summary", str(settings)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a certification TSV" in err
    with pytest.raises(ResultsError, match="not found"):
        read_tsv(tmp_path / "nope.tsv")


def test_composition_refuses_impossible_counts(certified):
    """nA = n + 1 composed in rsrouter 0.1 into a routed radius of 2.8 for a sigma 0.25 expert."""
    from rsrouter.bench.methods import routed_frame

    counts = certified.assign(time=0.0, share=1.0)
    router = counts.assign(cA=0, nA=counts["n"], sigma=1.0)
    with pytest.raises(CountsError, match=r"impossible counts: nA=401"):
        routed_frame(router, [counts.assign(nA=counts["n"] + 1), counts], ["a", "b"], 0.01, 0.5,
                     1.0)
    with pytest.raises(CountsError, match="chose expert 5, but it has 2"):
        routed_frame(router.assign(cA=5), [counts, counts], ["a", "b"], 0.01, 0.5, 1.0)


def test_one_writer_at_a_time_in_process(tmp_path):
    path = tmp_path / "x.tsv"
    first = ResumableTSV(path, COHEN_COLUMNS, {"n": 1})
    with pytest.raises(LockedError, match=r"in use by pid \d+"):
        ResumableTSV(path, COHEN_COLUMNS, {"n": 1})
    first.close()
    with ResumableTSV(path, COHEN_COLUMNS, {"n": 1}) as again:
        assert again.done == set()
    assert not (tmp_path / "x.tsv.lock").exists()


def test_two_certify_processes_on_one_out(digits_expert, tmp_path):
    out = tmp_path / "busy.tsv"
    args = [*CERTIFY, "--n", "50000000", "--batch-size", "2000", "--model", digits_expert,
            "--out", str(out)]
    first = subprocess.Popen([sys.executable, "-m", "rsrouter", *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "busy.tsv.lock").exists() and time.time() < deadline:
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "rsrouter", *args], capture_output=True,
                                text=True, timeout=300)
        assert first.poll() is None, "the first run ended before the second one started"
        assert second.returncode == 2
        assert f"in use by pid {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)  # a crash: the OS releases the lock
        first.wait()
    # the lock file a crash leaves behind does not block; no row was written at n = 5e7, so a
    # run with other settings may take the file over
    assert main([*CERTIFY, "--model", digits_expert, "--out", str(out)]) == 0
    df = read_tsv(out)  # refuses a duplicated idx
    assert df["idx"].tolist() == list(range(0, 300, 25))


@pytest.mark.parametrize("state", ["settings only", "empty tsv", "torn header"])
def test_a_crash_before_the_first_row_resumes(digits_expert, tmp_path, state):
    out = tmp_path / "c.tsv"
    assert main([*CERTIFY, "--model", digits_expert, "--out", str(out)]) == 0
    reference = certificates(out)
    header = out.read_text().splitlines()[0]
    if state == "settings only":
        out.unlink()
    else:
        out.write_text("" if state == "empty tsv" else header[:7])
    assert main([*CERTIFY, "--model", digits_expert, "--out", str(out)]) == 0
    pd.testing.assert_frame_equal(certificates(out), reference)


def test_growing_a_run_and_what_a_resume_must_match(digits_expert, tmp_path, capsys):
    out = tmp_path / "c.tsv"
    assert main([*CERTIFY, "--max", "100", "--model", digits_expert, "--out", str(out)]) == 0
    assert main([*CERTIFY, "--max", "300", "--model", digits_expert, "--out", str(out)]) == 0
    assert read_tsv(out)["idx"].tolist() == list(range(0, 300, 25))  # grown, nothing redone
    capsys.readouterr()
    for change in (["--sigma", "0.3"], ["--seed", "1"], ["--n", "500"], ["--alpha", "0.02"]):
        assert main([*CERTIFY, *change, "--model", digits_expert, "--out", str(out)]) == 2
        assert "other settings" in capsys.readouterr().err, change
    # the data a run read is what must match, not how --data-root was spelled: digits ignores it
    assert main([*CERTIFY, "--data-root", str(tmp_path), "--model", digits_expert,
                 "--out", str(out)]) == 0
    settings = json.loads((tmp_path / "c.tsv.json").read_text())
    assert settings["data"]["length"] == 500 and len(settings["data"]["labels_sha256"]) == 64
    with pytest.raises(ResumeError, match="other settings"):
        ResumableTSV(out, list(pd.read_csv(out, sep="\t").columns), {"n": 1})


@pytest.fixture(scope="module")
def routed_tsv(tmp_path_factory):
    """A real routed TSV of the bundled Fashion-MNIST router (20 inputs, n = 300)."""
    out = tmp_path_factory.mktemp("routed") / "routed.tsv"
    assert main(["certify", "--router", "experts/routers/fashion-mnist", "--dataset",
                 "fashion-mnist", "--n0", "30", "--n", "300", "--alpha", "0.01", "--skip", "500",
                 "--batch-size", "3000", "--out", str(out), "--no-progress"]) == 0
    return pd.read_csv(out, sep="\t")


@pytest.mark.parametrize("forge, message", [
    (lambda df: df.drop(columns="router_sigma"), "needs all of"),
    (lambda df: df.assign(radius=df["radius"].where(df["radius"] == 0, df["radius"] + 0.1)),
     r"not min\(router radius, expert radius\)"),
    (lambda df: df.assign(correct=1, predict=df["label"]), "predict must be the certified class"),
    (lambda df: df.drop(columns="nA"), "but not"),
    (lambda df: df.drop(columns="alpha_router"), "needs all of"),
    (lambda df: df.assign(expert="-"), "expert must be '-' exactly when"),
])
def test_a_forged_routed_row_is_refused(routed_tsv, tmp_path, forge, message):
    assert (routed_tsv["predict"] == -1).any() and (routed_tsv["radius"] > 0).any()
    read_tsv(_write(routed_tsv, tmp_path / "ok.tsv"))  # the real one passes
    with pytest.raises((ResultsError, CountsError), match=message):
        read_tsv(_write(forge(routed_tsv), tmp_path / "forged.tsv"))


def test_time_is_the_group_time_shared_among_its_inputs(digits_expert, tmp_path):
    from rsrouter.results.runs import group_size, run_rows

    out = tmp_path / "t.tsv"
    calls = []

    def rows(xs, chunk, labels):
        calls.append(len(chunk))
        time.sleep(0.02 * len(chunk))
        return [{"idx": i, "label": y} for i, y in zip(chunk, labels)]

    from rsrouter.data import load_dataset

    data = load_dataset("digits")
    run_rows(rows, data, [0, 1, 2, 3, 4, 3], out, ["idx", "label", "time"], {}, group=2,
             progress=False)
    df = pd.read_csv(out, sep="\t")
    assert df["idx"].tolist() == [0, 1, 2, 3, 4] and calls == [2, 2, 1]  # idx 3 once
    assert df["time"].iloc[0] == df["time"].iloc[1] and (df["time"] >= 0.02).all()
    assert df["time"].sum() == pytest.approx(0.02 * 5, rel=0.5)
    assert group_size(Protocol(n0=100, n=10_000, batch_size=2500)) == 25


def test_a_file_certify_refuses_is_left_as_it_was(digits_expert, tmp_path, capsys):
    """certify never cuts or rewrites a file it then refuses to resume: not a torn line of a run
    with other settings, not a file of the user's that happens to sit at --out."""
    out = tmp_path / "c.tsv"
    assert main([*CERTIFY, "--model", digits_expert, "--out", str(out)]) == 0
    with open(out, "a") as f:
        f.write("300\t4\t4\t0.1")  # a torn last row
    before = out.read_bytes()
    assert main([*CERTIFY, "--seed", "1", "--model", digits_expert, "--out", str(out)]) == 2
    assert "other settings" in capsys.readouterr().err and out.read_bytes() == before
    assert main([*CERTIFY, "--model", digits_expert, "--out", str(out)]) == 0  # same settings
    assert read_tsv(out)["idx"].tolist() == list(range(0, 300, 25))
    for text in ("my notes, one line\n", "idx\tlabel\n", "no newline at all"):
        mine = tmp_path / "notes.tsv"
        mine.write_text(text)
        assert main([*CERTIFY, "--model", digits_expert, "--out", str(mine)]) == 2
        assert "is not a certification TSV of rsrouter's" in capsys.readouterr().err
        assert mine.read_text() == text and not (tmp_path / "notes.tsv.json").exists()
    # the sharded path (torchrun, or parts left by one) reads and merges parts: it refuses too
    mine = tmp_path / "notes.tsv"
    mine.write_text("my notes, one line\n")
    part = tmp_path / "notes.tsv.part0of2"
    shutil.copy(out, part)
    shutil.copy(tmp_path / "c.tsv.json", tmp_path / "notes.tsv.part0of2.json")
    assert main([*CERTIFY, "--model", digits_expert, "--out", str(mine)]) == 2
    assert "is not a certification TSV of rsrouter's" in capsys.readouterr().err
    assert mine.read_text() == "my notes, one line\n" and part.exists()


def test_a_figure_key_names_everything_the_figure_is_drawn_from():
    import numpy as np

    from rsrouter.results.figures import figure_key

    grid = np.linspace(0, 1, 5)
    key = figure_key(grid, "title", ("label", {"color": "k"}))
    assert key == figure_key(grid.copy(), "title", ("label", {"color": "k"}))
    changed = grid.copy()
    changed[3] += 1e-12
    assert len({key, figure_key(changed, "title", ("label", {"color": "k"})),
                figure_key(grid.astype(np.float32), "title", ("label", {"color": "k"})),
                figure_key(grid, "title ", ("label", {"color": "k"})),
                figure_key(grid, "title", ("label", {"color": "r"})),
                figure_key(grid, "title", ("label", {"color": "k"}), code=(__file__,))}) == 6


def test_the_cost_plane_names_its_points_apart_and_draws_references_as_lines():
    """Crowded points (five at one cost, close in ACR) get labels that overlap nothing and
    stay in their panel; names are plain text; the oracle is a dashed line, never a point."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from rsrouter.results.figures import CostPoint, cost_figure

    names = [r"$\frac{", "<b>x</b>", "_hidden", "sigma-0.25", "sigma-0.50", "cascade"]
    points = [CostPoint(name, 1.0 + (i == 5) * 0.05, 1.30 + 0.002 * i, 0.04, 5.0 + 0.3 * i,
                        "cascade" if i == 5 else "expert", "C0") for i, name in enumerate(names)]
    points.append(CostPoint("routed", 4.0, 1.39, None, None, "router", "C3"))
    fig = cost_figure(points, oracles=((1.48, "0.3"),), title="$x$: a title")
    renderer = FigureCanvasAgg(fig).get_renderer()
    acr_ax, regret_ax = fig.axes
    shown = [r"\$\frac{", "<b>x</b>", " _hidden", "sigma-0.25", "sigma-0.50", "cascade"]
    for ax, labels in ((acr_ax, [*shown, "routed"]), (regret_ax, shown)):  # routed: no regret
        assert sorted(t.get_text() for t in ax.texts) == sorted(labels)
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        frame = ax.get_window_extent(renderer)
        assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0
                   and b.y1 <= frame.y1 for b in boxes)
        assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]
                    if a.overlaps(b)], "labels overlap"
        assert sum(len(line.get_xdata()) for line in ax.lines
                   if line.get_marker() != "None") == len(labels)  # one marker per point
    dashed = [line.get_ydata()[0] for line in acr_ax.lines if line.get_linestyle() == "--"]
    assert dashed == [1.48]
    assert [line.get_ydata()[0] for line in regret_ax.lines if line.get_linestyle() == "--"] \
        == [0]
    assert fig._suptitle.get_text() == r"\$x\$: a title"
    fig.savefig(io.BytesIO(), format="png")  # no math is parsed: the names draw as typed
