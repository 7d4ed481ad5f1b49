"""Every `attnsim ...` command shown in README.md and docs/quickstart.md runs and exits 0."""
import re
import shlex
from pathlib import Path

import pytest

from attnsim.cli import main

ROOT = Path(__file__).resolve().parents[1]


def documented_commands():
    out = []
    for doc in ("README.md", "docs/quickstart.md"):
        for block in re.findall(r"```(?:bash|console)\n(.*?)```", (ROOT / doc).read_text(), re.S):
            for line in block.splitlines():
                line = line.split("#")[0].strip().removeprefix("$ ")
                if "&&" in line:  # the install one-liner: its last command
                    line = line.split("&&")[-1].strip()
                if line.startswith("attnsim ") and " hw probe" not in line:
                    out.append((doc, line))
    return out


@pytest.mark.parametrize("doc,line", documented_commands(), ids=lambda x: x if isinstance(x, str) and x.startswith("attnsim") else None)
def test_documented_command_runs(doc, line, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --png flux.png, my.yaml: relative files land in a scratch dir
    argv = [str(ROOT / a) if a.startswith("validate/data/") else a for a in shlex.split(line)[1:]]
    if argv[:2] == ["validate", "run"]:
        pytest.importorskip("torch")  # the validation layer runs kernels: torch is its extra
    if argv[:2] == ["hw", "check"] and argv[2] == "my.yaml":
        (tmp_path / "my.yaml").write_text((ROOT / "hwmodels/profiles/H100-SXM.yaml").read_text())
    assert main(argv) == 0, f"{doc}: {line}: {capsys.readouterr().err}"


def test_the_docs_show_commands():
    assert len(documented_commands()) >= 15
