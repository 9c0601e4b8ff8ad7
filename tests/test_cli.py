"""The command line end to end, through typer's CliRunner."""

import json

import torch
from typer.testing import CliRunner

import composer
from cli.app import app

from .conftest import BLUEPRINTS, small_sets

runner = CliRunner()
COATNET = str(BLUEPRINTS / "coatnet0.yaml")


def test_validate_ok():
    r = runner.invoke(app, ["validate", COATNET])
    assert r.exit_code == 0
    assert "ok: coatnet-0, layout C-C-T-T, 4 stages, 12 blocks" in r.stdout


def test_profile_json(reference):
    r = runner.invoke(app, ["profile", COATNET, "--json"])
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    assert d["name"] == "coatnet-0" and d["input"] == [1, 3, 224, 224]
    assert d["params"] == reference["coatnet_0"]["params"]
    assert d["flops"] == 2 * d["macs"]
    assert [s["name"] for s in d["stages"]] == ["stem", "s1", "s2", "s3", "s4", "head"]
    assert sum(s["macs"] for s in d["stages"]) == d["macs"]
    assert d["stages"][3]["output_shape"] == [384, 14, 14]
    assert d["uncounted_ops"] == {}


def test_profile_table_size_and_batch():
    r = runner.invoke(app, ["profile", COATNET, "--size", "128", "--batch", "2"])
    assert r.exit_code == 0
    assert "input 2x3x128x128" in r.stdout and "MACs:" in r.stdout and "FLOPs = 2 x MACs" in r.stdout


def test_build_saves_and_reloads(tmp_path):
    out = tmp_path / "m.pt"
    sets = {**small_sets("coatnet0"), "classes": 10}
    flags = [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    r = runner.invoke(app, ["build", COATNET, *flags, "-o", str(out)])
    assert r.exit_code == 0, r.output
    ref = composer.build(composer.load(COATNET, overrides=sets))
    rows = [line.split()[0] for line in r.stdout.splitlines()[2:9]]
    assert rows == ["stem", "s1", "s2", "s3", "s4", "head", "total"], r.stdout
    assert f"{sum(p.numel() for p in ref.parameters()):,}" in r.stdout and "saved" in r.stdout
    net = composer.load_model(out)
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(net.eval()(x), ref.eval()(x))
    assert not list(tmp_path.glob(".m.pt.*"))  # no temporary file left behind


def test_bad_blueprint_is_located_exit_1_no_traceback(write, tiny_text):
    path = write(tiny_text.replace("kernel: 3", "kernal: 3").replace("depth: 1,", "depth: -1,"))
    for command in ("validate", "build", "profile"):
        r = runner.invoke(app, [command, str(path)])
        assert r.exit_code == 1
        assert "Traceback" not in r.output
        assert f"{path}:7:32: blocks.C.kernal: unknown option `kernal` (did you mean `kernel`?)" in r.stderr
        assert f"{path}:10:" in r.stderr


def test_missing_file_and_bad_set(tmp_path):
    r = runner.invoke(app, ["profile", str(tmp_path / "none.yaml")])
    assert r.exit_code == 1 and "no such file" in r.stderr
    r = runner.invoke(app, ["profile", COATNET, "--set", "stages.9.depth=2"])
    assert r.exit_code == 1 and "`stages.9` does not exist" in r.stderr
    r = runner.invoke(app, ["validate", COATNET, "--set", "stages.2.depth=0"])
    assert r.exit_code == 1 and "stages[2].depth" in r.stderr


def test_build_output_into_missing_directory(tmp_path):
    r = runner.invoke(app, ["build", COATNET, "-o", str(tmp_path / "no" / "m.pt")])
    assert r.exit_code == 1 and "does not exist" in r.stderr


def test_malformed_set_is_a_command_line_error():
    r = runner.invoke(app, ["validate", COATNET, "--set", "stages.0.depth"])
    assert r.exit_code == 1 and "<command line>: `--set stages.0.depth`: expected KEY=VALUE" in r.stderr


def test_malformed_options_exit_1_from_the_console_entry_point():
    import subprocess
    import sys

    for args, message in ((["--size", "0"], "Invalid value for '--size'"), (["--dtype", "fp8"], "Invalid value for '--dtype'"),
                          (["--no-such-option"], "No such option")):
        r = subprocess.run([sys.executable, "-c", "from cli.app import main; main()", "profile", COATNET, *args],
                           capture_output=True, text=True)
        assert r.returncode == 1 and "Traceback" not in r.stderr and message in r.stderr
    ok = subprocess.run([sys.executable, "-c", "from cli.app import main; main()", "blocks"], capture_output=True)
    assert ok.returncode == 0


def test_set_values_are_read_like_blueprint_files():
    vit = str(BLUEPRINTS / "vit_b16.yaml")
    r = runner.invoke(app, ["validate", vit, "--set", "blocks.T.norm_eps=1e-6"])  # a float, as in the file
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["validate", vit, "--set", "stages.0.depth=[1,"])
    assert r.exit_code == 1 and "<command line>: `--set stages.0.depth=[1,`: the value is not valid YAML" in r.stderr


def _help_commands():
    import typer.main

    group = typer.main.get_command(app)
    return group, sorted(group.commands)


def _flat(text: str) -> str:
    return " ".join(text.replace("│", " ").replace("╭", " ").replace("╰", " ").split())


def test_every_help_shows_its_texts_whole_and_no_value_type_on_flags():
    """Square brackets in help texts are words (rich markup would drop `[low, high, step]`), and a flag,
    which takes no value, shows no `<bool>`: for every command and the app itself."""
    group, names = _help_commands()
    assert len(names) >= 12
    for name in [None, *names]:
        command = group if name is None else group.commands[name]
        r = runner.invoke(app, ([name] if name else []) + ["--help"], env={"COLUMNS": "400"})
        assert r.exit_code == 0, (name, r.output)
        assert "<bool>" not in r.output, name
        shown = _flat(r.output)
        for param in command.params:
            if getattr(param, "help", None):
                text = _flat(param.help.replace("\\[", "["))
                assert text in shown, (name, param.name, text)
    r = runner.invoke(app, ["search", "--help"], env={"COLUMNS": "400"})
    assert "{range: [low, high, step]}" in r.output
