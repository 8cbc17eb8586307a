"""benchmarks/reproduce.py: every BENCHMARKS.md section has a command, and every command still parses."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
import typer

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import reproduce  # noqa: E402


def _parse_ragtune(argv: list[str]) -> None:
    """Walk the CLI's groups like click does and let the leaf command parse its options, without running it."""
    from ragtune.cli import app

    command = typer.main.get_command(app)  # typer vendors click: its classes are not click's
    ctx = None
    name = "ragtune"
    while hasattr(command, "resolve_command"):
        ctx = type(ctx or command.make_context(name, [], resilient_parsing=True))(command, info_name=name, parent=ctx)
        _, sub, argv = command.resolve_command(ctx, argv)
        name, command = sub.name, sub
    command.make_context(name, list(argv), parent=ctx)


def test_every_benchmarks_section_has_a_reproducing_table():
    covered = {t.section for t in reproduce.TABLES.values()}
    missing = [s for s in reproduce.benchmark_sections() if s not in covered]
    assert not missing, f"BENCHMARKS.md sections with no entry in benchmarks/reproduce.py TABLES: {missing}"


@pytest.mark.parametrize("name", list(reproduce.TABLES))
def test_every_step_parses(name):
    for step in reproduce.TABLES[name].steps:
        argv = shlex.split(step.command)
        if argv[0] == "python":
            assert (REPO / argv[1]).is_file(), step.command
        else:
            assert argv[0] == "ragtune", step.command
            _parse_ragtune(argv[1:])


def test_scifact_training_steps_parse():
    import scifact_training

    for command in scifact_training.STEPS:
        _parse_ragtune(shlex.split(command)[1:])


def test_a_misspelt_option_is_caught():
    with pytest.raises(Exception, match="No such option: --retreiver"):
        _parse_ragtune(shlex.split("eval --data x --retreiver bm25"))
    with pytest.raises(Exception, match="No such command"):
        _parse_ragtune(shlex.split("train embeding configs/scifact-embedding.yaml"))


def test_steps_run_in_order_resume_and_stop_at_the_first_failure(tmp_path, monkeypatch):
    marker = tmp_path / "made"
    marker.write_text("")
    monkeypatch.setitem(reproduce.TABLES, "t", reproduce.Table("s", 1, [
        reproduce.Step("python -c \"print('first')\"", table=True),
        reproduce.Step("python -c raise(SystemExit(7))", creates=str(marker)),  # exists: skipped
        reproduce.Step("python -c \"print('third')\""),
        reproduce.Step("python -c raise(SystemExit(3))"),
        reproduce.Step("python -c \"print('never')\"", table=True),
    ]))
    assert reproduce.run_table("t", tmp_path / "out") == 3
    md, log = (tmp_path / "out" / "t.md").read_text(), (tmp_path / "out" / "t.log").read_text()
    assert "first" in md and "third" not in md and "never" not in md + log
    assert "third" in log and "[exit 3," in log and "SystemExit(7)" not in log
