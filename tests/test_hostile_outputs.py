"""Hostile and careless outputs, weights files and pictures: every writer keeps the user's files.

One output rule for every command (composer/io/files.py): an input of the command is never replaced,
names from inside files never leave the named folder, every failure names the target (never the
temporary file) and is one line with exit 1. Budgets before work: names in pictures, safetensors
headers, the uncompressed size of a zip checkpoint, non-finite weights.

As in tests/test_hostile.py, CI runs the cases in-process (typer's CliRunner) and a sample as real
processes; the long profile (`HOSTILE_PROFILE=long`) runs every case as its own process under a
2 GB address-space limit and a timeout.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch

import composer
from cli.app import app
from composer.io.files import InputTargetError, WriteError, child, safe_name, write_text
from composer.weights import WeightsError

from .conftest import ROOT, TINY
from .test_hostile import LONG, _check_refusal, runner

SPACE = TINY.replace("layout: C-T", "layout: {one_of: [C-T, C-C]}")
# two candidates, both on the front (more MACs or more parameters)
SPACE_2 = TINY.replace("  - {depth: 1, channels: 16, stride: 2}",
                       "  - {one_of: [{depth: 1, channels: 16, stride: 1}, {depth: 1, channels: 48, stride: 2}]}")
LIMIT = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, resource.RLIM_INFINITY));"
         "{extra}from cli.app import main; sys.argv = ['composer'] + sys.argv[1:]; main()")


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (links as their target text), to compare before and after."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(folder))] = os.readlink(p).encode()
        elif p.is_file():
            out[str(p.relative_to(folder))] = p.read_bytes()
    return out


def _saved_model(tmp: Path) -> Path:
    bp = tmp / "bp.yaml"
    bp.write_text(TINY)
    composer.save(composer.build(composer.load(bp)), composer.load(bp), tmp / "model.pt")
    return tmp / "model.pt"


# --- 1. never replace an input of the same command ---------------------------------------------------
# (id, setup(tmp) -> command-line arguments, run in tmp); every file in tmp must be unchanged after

def _same(tmp: Path, name: str, text: str = TINY) -> None:
    (tmp / name).write_text(text)


SAME_INPUT = {
    "build-self": lambda t: (_same(t, "bp.yaml"), ["build", "bp.yaml", "-o", "bp.yaml"])[1],
    "build-self-spelled-otherwise": lambda t: (_same(t, "bp.yaml"), ["build", "bp.yaml", "-o", "./sub/../bp.yaml"])[1],
    "build-through-symlink": lambda t: (_same(t, "real.yaml"), os.symlink("real.yaml", t / "bp.yaml"),
                                        ["build", "bp.yaml", "-o", "real.yaml"])[2],
    "build-hard-link": lambda t: (_same(t, "bp.yaml"), os.link(t / "bp.yaml", t / "other.pt"),
                                  ["build", "bp.yaml", "-o", "other.pt"])[2],
    "build-over-weights": lambda t: (_saved_model(t), ["build", "bp.yaml", "--weights", "model.pt", "-o", "model.pt"])[1],
    "draw-self": lambda t: (_same(t, "bp.svg"), ["draw", "bp.svg", "-o", "bp.svg"])[1],
    "compare-plot-over-input": lambda t: (_same(t, "a.yaml"), _same(t, "b.png"),
                                          ["compare", "a.yaml", "b.png", "--plot", "b.png"])[2],
    "search-plot-over-space": lambda t: (_same(t, "space.svg", SPACE),
                                         ["search", "space.svg", "--budget", "params=1G", "--plot", "space.svg"])[1],
    "search-emit-over-space": lambda t: (_same(t, "tiny-0.yaml", SPACE),
                                         ["search", "tiny-0.yaml", "--budget", "params=1G", "--emit", "."])[1],
    "export-self": lambda t: (_same(t, "bp.onnx"), ["export", "bp.onnx", "-o", "bp.onnx"])[1],
}


def _in(tmp: Path, monkeypatch, args: list[str]):
    monkeypatch.chdir(tmp)
    return runner.invoke(app, args)


@pytest.mark.parametrize("name", sorted(SAME_INPUT))
def test_no_command_replaces_its_own_input(name, tmp_path, monkeypatch):
    args = SAME_INPUT[name](tmp_path)
    (tmp_path / "sub").mkdir()
    before = _files(tmp_path)
    r = _in(tmp_path, monkeypatch, args)
    _check_refusal(r, "it is an input of this command", False)
    assert "cannot write `" in r.output and ".tmp" not in r.output
    assert _files(tmp_path) == before


def test_search_emit_refuses_all_before_writing_any(tmp_path, monkeypatch):
    """One emitted name is the space itself: nothing is written, not even the candidates before it."""
    (tmp_path / "tiny-1.yaml").write_text(SPACE_2)
    before = _files(tmp_path)
    r = _in(tmp_path, monkeypatch, ["search", "tiny-1.yaml", "--budget", "params=1G", "--emit", "."])
    _check_refusal(r, "it is an input of this command", False)
    assert _files(tmp_path) == before


def test_the_library_never_saves_over_the_blueprint_it_read(tmp_path):
    path = tmp_path / "bp.yaml"
    path.write_text(TINY)
    bp = composer.load(path)
    with pytest.raises(InputTargetError):
        composer.save(composer.build(bp), bp, path)
    assert path.read_text() == TINY and sorted(p.name for p in tmp_path.iterdir()) == ["bp.yaml"]


def test_inputs_are_forgotten_between_commands(tmp_path, monkeypatch):
    """A declared input belongs to its command: the next command may write that file."""
    (tmp_path / "a.yaml").write_text(TINY)
    assert _in(tmp_path, monkeypatch, ["build", "a.yaml", "-o", "b.pt"]).exit_code == 0
    (tmp_path / "c.yaml").write_text(TINY)
    r = runner.invoke(app, ["build", "c.yaml", "-o", "a.pt"])
    assert r.exit_code == 0, r.output


# --- 2. names from files never leave the named folder -----------------------------------------------

@pytest.mark.parametrize("name", ["../../escape", "/etc/passwd", "a/b\\\\c", ".hidden", "..", "x" * 5000,
                                  "caf\u00e9 \u202e", "CON:*?<>|"])
def test_search_emit_names_stay_in_the_folder(name, tmp_path, monkeypatch):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.replace("name: tiny", f"name: {yaml_quote(name)}"))
    out = tmp_path / "out"
    r = _in(tmp_path, monkeypatch, ["search", "space.yaml", "--budget", "params=1G", "--emit", "out", "--top", "1"])
    assert r.exit_code == 0, r.output
    written = list(out.iterdir())
    assert len(written) == 1 and written[0].parent == out
    assert not written[0].name.startswith(".") and "/" not in written[0].name
    assert len(written[0].name.encode()) <= 255 and written[0].suffix == ".yaml"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "space.yaml"]
    assert composer.load(written[0]).name.startswith(name[:50])  # the blueprint keeps its name inside


def yaml_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_safe_name_and_child():
    assert safe_name("../a/b") == "a_b" and safe_name("a b.") == "a_b"
    assert safe_name("...") == "unnamed" and safe_name("", ".yaml", fallback="space") == "space.yaml"
    assert len(safe_name("\u00e9" * 300, ".yaml").encode()) <= 255
    assert safe_name("a\ud800b") == "a_b"  # a lone surrogate is no file-name character
    for bad in ("../x", "a/b", "..", ""):
        with pytest.raises(ValueError):
            child("out", bad)
    assert child("out", "x.yaml") == Path("out/x.yaml")


# --- 3. every OSError: one line naming the target, exit 1, nothing left behind ---------------------

def _fail_with(err: int):
    def fsync(fd):
        raise OSError(err, os.strerror(err))
    return fsync


DISK_CASES = [(["schema", "-o", "out.json"], err) for err in (errno.ENOSPC, errno.EFBIG, errno.EIO, errno.EDQUOT)] + [
    (["build", "bp.yaml", "-o", "out.pt"], errno.ENOSPC), (["build", "bp.yaml", "-o", "out.safetensors"], errno.EDQUOT),
    (["draw", "bp.yaml", "-o", "out.svg"], errno.ENOSPC), (["compare", "bp.yaml", "--plot", "out.png"], errno.EIO)]


@pytest.mark.parametrize("command,err", DISK_CASES, ids=[f"{c[0]}-{c[-1]}-{errno.errorcode[e]}" for c, e in DISK_CASES])
def test_a_failing_disk_is_one_line_naming_the_target(command, err, tmp_path, monkeypatch):
    (tmp_path / "bp.yaml").write_text(TINY)
    (tmp_path / command[-1]).write_bytes(b"previous")  # an existing output survives a failed write
    monkeypatch.setattr("composer.io.files.os.fsync", _fail_with(err))
    r = _in(tmp_path, monkeypatch, command)
    _check_refusal(r, f"cannot write `{command[-1]}`: {os.strerror(err)}", False)
    assert ".tmp" not in r.output and r.output.count("error:") == 1
    assert (tmp_path / command[-1]).read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["bp.yaml", command[-1]])


@pytest.mark.parametrize("err", [errno.EROFS, errno.EACCES, errno.ENAMETOOLONG])
def test_a_refused_temporary_file_is_reported_under_the_target(err, tmp_path, monkeypatch):
    def mkstemp(prefix="", suffix="", dir=None):  # noqa: A002
        raise OSError(err, os.strerror(err), os.path.join(dir, prefix + "abc" + suffix))

    (tmp_path / "bp.yaml").write_text(TINY)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    commands = [["build", "bp.yaml", "-o", "m.pt"], ["schema", "-o", "s.json"]]
    if err == errno.EROFS:  # an export is checked before it is written: the slowest way to meet the error
        commands.append(["export", "bp.yaml", "-o", "m.onnx"])
    for command in commands:
        r = _in(tmp_path, monkeypatch, command)
        _check_refusal(r, f"cannot write `{command[-1]}`: its folder takes no new file: {os.strerror(err)}", False)
        assert ".tmp" not in r.output and ".abc" not in r.output


def test_write_errors_of_the_library_name_the_target(tmp_path, monkeypatch):
    monkeypatch.setattr("composer.io.files.os.fsync", _fail_with(errno.ENOSPC))
    with pytest.raises(WriteError) as e:
        write_text(tmp_path / "x.json", "{}")
    assert e.value.filename == str(tmp_path / "x.json") and e.value.errno == errno.ENOSPC


def _process(args: list[str], cwd: Path, extra: str = "", timeout: int = 60):
    code = LIMIT.format(extra=extra)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_a_file_size_limit_while_saving_is_one_line(tmp_path):
    """A real EFBIG (RLIMIT_FSIZE): torch.save reports it as its own RuntimeError; the cause is told."""
    (tmp_path / "bp.yaml").write_text(TINY)
    fsize = "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000));"
    for out in ("m.pt", "m.safetensors"):
        r = _process(["build", "bp.yaml", "-o", out], tmp_path, fsize)
        err = r.stderr.decode()
        assert r.returncode == 1 and f"error: cannot write `{out}`: File too large" in err, err
        assert "Traceback" not in err and "internal error" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bp.yaml"]


# --- the long profile: every case above as its own bounded process ------------------------------------

PROCESS = sorted(SAME_INPUT) if LONG else ["build-self", "search-emit-over-space"]


@pytest.mark.parametrize("name", PROCESS)
def test_same_input_cases_as_processes(name, tmp_path):
    args = SAME_INPUT[name](tmp_path)
    (tmp_path / "sub").mkdir()
    before = _files(tmp_path)
    r = _process(args, tmp_path, timeout=30)
    output = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 1 and "it is an input of this command" in output, output
    assert "Traceback" not in output and "internal error" not in output
    assert _files(tmp_path) == before



# --- 4. weights files: budgets from the directory before reading, non-finite weights refused --------

def _safetensors_with_header(path: Path, header: bytes, length: int | None = None) -> Path:
    path.write_bytes(struct.pack("<Q", len(header) if length is None else length) + header)
    return path


def _zip_checkpoint(path: Path, pickle_bytes: int, compress: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip archive shaped like torch.save's, whose object stream inflates to `pickle_bytes`."""
    with zipfile.ZipFile(path, "w", compression=compress) as z:
        with z.open("archive/data.pkl", "w", force_zip64=True) as fh:
            block = b"\0" * (1 << 20)
            for _ in range(pickle_bytes >> 20):
                fh.write(block)
        z.writestr("archive/version", "3\n")
    return path


def _nan_model(tmp: Path, suffix: str) -> Path:
    bp = composer.load(_write(tmp / "bp.yaml", TINY))
    net = composer.build(bp)
    with torch.no_grad():
        net.stages[0].blocks[0].parameters().__next__().view(-1)[3] = float("nan")
    composer.save(net, bp, tmp / f"nan{suffix}")
    return tmp / f"nan{suffix}"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _nan_checkpoint(tmp: Path) -> Path:
    net = composer.build(composer.load(_write(tmp / "bp.yaml", TINY)))
    state = net.state_dict()
    state["head.fc.bias"][0] = float("inf")
    torch.save(state, tmp / "inf.pt")
    return tmp / "inf.pt"


# (id, make(tmp) -> the file, command (with {f} for it), expected words)
WEIGHTS_CASES = {
    "safetensors-huge-header": (lambda t: _safetensors_with_header(t / "w.safetensors", b"{}", 50_000_000),
                                ["build", "bp.yaml", "--weights", "{f}"], "over the budget of 16,777,216"),
    "safetensors-too-many-tensors": (
        lambda t: _safetensors_with_header(t / "w.safetensors", json.dumps(
            {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(100_001)}).encode()),
        ["build", "bp.yaml", "--weights", "{f}"], "100,001 tensors, over the budget of 100,000"),
    "safetensors-header-past-end": (lambda t: _safetensors_with_header(t / "w.safetensors", b"{}", 1000),
                                    ["build", "bp.yaml", "--weights", "{f}"], "truncated or corrupt"),
    "safetensors-header-not-json": (lambda t: _safetensors_with_header(t / "w.safetensors", b"{" * 64),
                                    ["build", "bp.yaml", "--weights", "{f}"], "its header is not JSON"),
    "zip-inflating-object-stream": (lambda t: _zip_checkpoint(t / "w.pt", 300 << 20),
                                    ["build", "bp.yaml", "--weights", "{f}"], "over the budget of 268,435,456"),
    "nan-saved-model-export": (lambda t: _nan_model(t, ".pt"), ["export", "{f}", "-o", "x.onnx"],
                               "holds NaN or infinite values"),
    "nan-saved-safetensors-load": (lambda t: _nan_model(t, ".safetensors"), ["export", "{f}", "-o", "x.onnx"],
                                   "holds NaN or infinite values"),
    "inf-checkpoint-weights": (_nan_checkpoint, ["build", "bp.yaml", "--weights", "{f}"],
                               "tensor `head.fc.bias` holds NaN or infinite values"),
}


@pytest.mark.parametrize("name", sorted(WEIGHTS_CASES))
def test_hostile_weights_files_are_refused_before_reading(name, tmp_path, monkeypatch):
    make, command, expected = WEIGHTS_CASES[name]
    _write(tmp_path / "bp.yaml", TINY)
    f = make(tmp_path)
    before = _files(tmp_path)
    r = _in(tmp_path, monkeypatch, [a.replace("{f}", f.name) for a in command])
    _check_refusal(r, expected, False)
    assert f"{f.name}" in r.output  # the file is named
    assert _files(tmp_path) == before


def test_non_finite_weights_are_refused_by_the_library_too(tmp_path):
    path = _nan_model(tmp_path, ".pt")
    with pytest.raises(WeightsError, match=r"stages\.0\.blocks\.0\.\S+` holds NaN"):
        composer.load_model(path)


# --- 5. names shown in pictures -------------------------------------------------------------------------

PICTURE_NAMES = {"mathtext": r"$\frac$", "dollars": "$5 and $6 and $", "huge": "n" * 100_000,
                 "newlines-tabs": "a\tb", "backslashes": "\\\\x\\y"}


@pytest.mark.parametrize("name", sorted(PICTURE_NAMES))
def test_names_in_pictures_are_escaped_and_cut(name, tmp_path, monkeypatch):
    import xml.etree.ElementTree as ET

    text = PICTURE_NAMES[name]
    _write(tmp_path / "bp.yaml", TINY.replace("name: tiny", f"name: {yaml_quote(text)}"))
    _write(tmp_path / "b.yaml", TINY)
    _write(tmp_path / "c.yaml", TINY.replace("name: tiny", "name: other"))
    _write(tmp_path / "space.yaml", SPACE.replace("name: tiny", f"name: {yaml_quote(text)}"))
    for command in (["draw", "bp.yaml", "-o", "d.svg"], ["compare", "bp.yaml", "b.yaml", "c.yaml", "--plot", "c.svg"],
                    ["search", "space.yaml", "--budget", "params=1G", "--plot", "s.svg"]):
        r = _in(tmp_path, monkeypatch, command)
        assert r.exit_code == 0, r.output
        assert len(r.output) < 5000  # a huge name is quoted short on the terminal too
        words = [t.text or "" for t in ET.parse(tmp_path / command[-1]).getroot().iter("{http://www.w3.org/2000/svg}text")]
        shown = [w for w in words if w.startswith(" ".join(text.split())[:20])]
        assert shown, (command, words[:5])
        assert all(len(w) < 200 for w in words)


# --- the catalogue in docs/errors.md shows real output --------------------------------------------------

def _doc_examples() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "errors.md").read_text()
    section = text[text.index("## Output files, weights files and pictures"):]
    return re.findall(r"```sh\n\$ (.*?)\n```\n\n```text\n(.*?)\n```", section, re.S)


def test_the_output_section_of_the_error_catalogue_is_real(tmp_path, monkeypatch):
    from huggingface_hub import constants

    examples = _doc_examples()
    assert len(examples) >= 8
    _write(tmp_path / "bp.yaml", TINY)
    os.symlink("bp.yaml", tmp_path / "link.yaml")
    bp = composer.load(tmp_path / "bp.yaml")
    net = composer.build(bp)
    with torch.no_grad():
        net.head.fc.bias[1] = float("nan")
    composer.save(net, bp, tmp_path / "nan.pt")
    _safetensors_with_header(tmp_path / "huge.safetensors", b"{}", 50_000_000)
    cache = "/home/me/.cache/huggingface/hub"  # as shown; never created: the lookup finds nothing there
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    gib = re.compile(r"\d+\.\d GiB")
    for command, expected in examples:
        words = shlex.split(command.removeprefix("HF_HUB_OFFLINE=1 "))
        if command.startswith("(ulimit -f 20; "):
            words = shlex.split(command.removeprefix("(ulimit -f 20; ").removesuffix(")"))
            r = _process(words[1:], tmp_path, "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000));")
            stderr = r.stderr.decode()
        else:
            assert words[0] == "composer"
            r = _in(tmp_path, monkeypatch, words[1:])
            stderr = r.stderr.replace(str(tmp_path / "hub"), cache)
        assert gib.sub("N GiB", stderr.rstrip("\n")) == gib.sub("N GiB", expected), command


WEIGHTS_PROCESS = sorted(WEIGHTS_CASES) if LONG else ["safetensors-huge-header"]


@pytest.mark.parametrize("name", WEIGHTS_PROCESS)
def test_weights_cases_as_processes(name, tmp_path):
    make, command, expected = WEIGHTS_CASES[name]
    _write(tmp_path / "bp.yaml", TINY)
    f = make(tmp_path)
    before = _files(tmp_path)
    r = _process([a.replace("{f}", f.name) for a in command], tmp_path, timeout=60)
    output = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 1 and expected in output, output
    assert "Traceback" not in output and "internal error" not in output
    assert _files(tmp_path) == before
