"""The README's examples run as written: every `xplain ...` command in a bash block parses with the CLI's own
parser (a renamed option, a dropped argument or a wrong value type fails here), the cheap ones run on the fake
backend, every Python block compiles and its `xplain` imports exist, every JSON block is JSON."""

from __future__ import annotations

import ast
import importlib
import json
import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from xplain.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"
TEXT = README.read_text(encoding="utf-8")
FILE_ARGUMENT = re.compile(r"^[\w./-]+\.(csv|jsonl|json|parquet|skops|txt)$")
#: Commands that run in a moment on the fake backend with the demo models (no data files, no server, no eval).
RUN = ("methods", "run posthoc", "explain demo:", "counterfactual demo:")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", TEXT, re.S)


def commands() -> list[list[str]]:
    """Each `xplain` command of the bash blocks as its arguments: continuation lines joined, `&&` chains split,
    comments and leading `VAR=value` settings dropped."""
    found = []
    for block in blocks("bash"):
        for line in re.sub(r"\\\n\s*", " ", block).split("\n"):
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                    words.pop(0)
                if words[:1] == ["xplain"]:
                    found.append(words[1:])
    return found


COMMANDS = commands()


def test_the_readme_has_its_examples():
    assert len(COMMANDS) > 25 and len(blocks("python")) >= 5


@pytest.mark.parametrize(
    "args", [["methods", "extra"], ["classifier", "fitt"], ["explain-dataset"], ["explain", "demo:reviews", "--kk", "3"]]
)
def test_a_drifted_command_does_not_parse(args):
    with pytest.raises(Exception) as raised:
        parse(args)
    assert "UsageError" in {kind.__name__ for kind in type(raised.value).__mro__}


def parsing_cli():
    """The CLI as click commands whose leaves only record that they were reached: parsing, type conversion and
    checks of the options run as for real, the work does not."""
    root = typer.main.get_command(app)
    pending = [root]
    while pending:
        command = pending.pop()
        children = getattr(command, "commands", None)
        if children:
            pending.extend(children.values())
        else:
            command.callback = lambda **_: None
    return root


def parse(args: list[str]) -> None:
    """Parse `args` as the CLI does, down to the leaf command; a UsageError if they do not fit."""
    parsing_cli().main(list(args), prog_name="xplain", standalone_mode=False)


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c)[:60] for c in COMMANDS])
def test_every_readme_command_parses(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for word in args:  # the data files a command names, so that options checking that a file exists are satisfied
        if FILE_ARGUMENT.match(word):
            (tmp_path / word).write_text("")
    parse(args)


@pytest.mark.parametrize("args", [c for c in COMMANDS if " ".join(c).startswith(RUN)], ids=lambda c: " ".join(c)[:60])
def test_the_cheap_readme_commands_run_on_the_fake_backend(args, tmp_path, monkeypatch, fake_llm_env):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


def test_every_python_block_compiles_and_its_xplain_imports_exist():
    for block in blocks("python"):
        tree = compile(block, "README.md", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xplain"):
                module = importlib.import_module(node.module)
                missing = [alias.name for alias in node.names if not hasattr(module, alias.name)]
                assert not missing, f"{node.module} has no {missing}"


def test_every_json_block_is_json():
    for block in blocks("json"):
        json.loads(block)


def test_the_readme_names_every_mcp_tool_and_serve_help_every_demo():
    """The catalog's methods are the catalog table's; the other MCP tools (the agent's probes) are in the MCP part."""
    from xplain.data.demo import DEMO_MODELS
    from xplain.mcp.server import xplain_tools
    from xplain.methods.catalog import catalog

    section = TEXT[TEXT.index("## MCP") :]
    section = section[: section.index("\n## ")]
    probes = [name for name in xplain_tools() if name not in catalog()]
    assert probes and not [name for name in probes if f"`{name}`" not in section]
    help_text = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200).output
    assert all(name in help_text for name in DEMO_MODELS), help_text
