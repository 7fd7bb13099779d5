"""docs/tutorial.md, run verbatim: every command of its bash blocks, in order, on digits.

The docs cannot drift from the tool: a renamed flag or a changed message breaks this test.
`rsrouter` lines run through the CLI's main() in a fresh folder; `git` lines as subprocesses.
`<sha>` is the commit that the previous `experts push` printed; `$PWD` the folder.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from helpers import ROOT

from rsrouter.cli import main
from rsrouter.paths import user_registry
from rsrouter.results.tsv import read_tsv

TUTORIAL = ROOT / "docs" / "tutorial.md"


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_the_tutorial_runs_as_written_twice(tmp_path, monkeypatch, capsys, one_thread):
    """Run it, then again in a new folder with the same user registry: the names it registers
    are taken by then, with byte-identical files, so registering them again is a no-op that
    points them at the new folder."""
    for run in ("first", "second"):
        folder = tmp_path / run
        folder.mkdir()
        _run_tutorial(folder, monkeypatch, capsys)
    from rsrouter.registry.core import Registry

    entries = Registry().entries()
    assert Path(entries["my-digits-0.25"].folder()).resolve() == (folder / "my-digits-0.25")
    assert entries["shared-digits-0.25"].source == f"git+{(folder / 'experts.git').as_uri()}"
    text = TUTORIAL.read_text()  # it says where the registry lives, and how to replace a name
    for where in ("RSROUTER_CONFIG_DIR", "~/.config/rsrouter", "registry.yaml", "--replace"):
        assert where in text


def _run_tutorial(tmp_path, monkeypatch, capsys) -> None:
    text = TUTORIAL.read_text()
    monkeypatch.chdir(tmp_path)
    for block in _blocks(text, "yaml"):  # config files, named by their first line
        name = block.splitlines()[0].removeprefix("# ").strip()
        (tmp_path / name).write_text(block)
    sha = None
    commands = [line for block in _blocks(text, "bash") for line in block.splitlines()
                if line.strip() and not line.startswith("#")]
    assert len(commands) >= 14
    for line in commands:
        line = line.replace("$PWD", str(tmp_path))
        if "<sha>" in line:
            assert sha, f"no commit sha printed before: {line}"
            line = line.replace("<sha>", sha)
        argv = shlex.split(line)
        if argv[0] == "git":
            subprocess.run(argv, check=True)
            continue
        assert argv[0] == "rsrouter", f"the tutorial may run rsrouter and git only: {line}"
        code = main([*argv[1:], *(["--no-progress"] if argv[1] in ("certify", "router") or
                                  argv[1:3] == ["experts", "train"] else [])])
        out = capsys.readouterr()
        assert code == 0, f"{line}\n{out.err}"
        if argv[1:3] == ["router", "train"]:  # the tutorial explains this warning
            assert "behave like that one expert" in out.err
        if argv[1:3] == ["experts", "list"]:  # the tutorial says where the registry lives
            assert str(user_registry()) in out.out
        found = re.search(r"register (git\+\S+)@([0-9a-f]{40})", out.out)
        if found:
            sha = found.group(2)
            assert found.group(1) == f"git+{(tmp_path / 'experts.git').as_uri()}"
    assert len(read_tsv(tmp_path / "routed.tsv")) == 50
    shared, mine = read_tsv(tmp_path / "shared.tsv"), read_tsv(tmp_path / "my-digits-0.25.tsv")
    assert shared["nA"].tolist() == mine["nA"].tolist()  # the same bytes, the same certificates
    for mistake in ("--alpha 2", "--n0 0", "--sigma 64", "--trust-code", "--project"):
        assert mistake in text
