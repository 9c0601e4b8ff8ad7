"""Properties over random blueprints: valid ones build and match the plan; mutated ones either
validate or raise BlueprintError, never another exception."""

import copy

import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st

import composer
from composer.blueprint import BlueprintError

LEGEND = {
    "C": {"type": "mbconv", "expand": 2, "se": 0.25},
    "T": {"type": "transformer", "attention": {"type": "relative", "head_dim": 8}},
    "P": {"type": "transformer", "attention": {"type": "plain", "heads": 2}},
    "X": {"type": "convnext", "kernel": 3},
    "B": {"type": "bottleneck", "se": 0.25},
    "R": {"type": "basic", "se": {"ratio": 0.5, "gate": "hardsigmoid"}},
    "G": {"type": "transformer", "attention": {"type": "gpsa", "heads": 2, "qkv_bias": False}},
    "V": {"type": "transformer", "attention": {"type": "conv", "heads": 2}},
    "L": {"type": "transformer", "attention": {"heads": 2}, "ffn": {"type": "conv", "se": {"reduction": 4}, "act": "hardswish"}},
}


@st.composite
def blueprints(draw):
    """A valid blueprint: random stem, 1-3 stages of random families, widths and strides."""
    stem_kind = draw(st.sampled_from(["conv", "patch", "none"]))
    if stem_kind == "conv":
        stem = {"type": "conv", "channels": [draw(st.sampled_from([8, 16]))], "stride": draw(st.sampled_from([1, 2]))}
        stem_stride = stem["stride"]
    elif stem_kind == "patch":
        stem = {"type": "patch", "channels": 16, "patch": draw(st.sampled_from([2, 4]))}
        stem_stride = stem["patch"]
    else:
        stem, stem_stride = {"type": "none"}, 1
    letters = draw(st.lists(st.sampled_from(sorted(LEGEND)), min_size=1, max_size=3))
    stages, total = [], stem_stride
    for letter in letters:
        stage = {"depth": draw(st.integers(1, 2)), "channels": draw(st.sampled_from([8, 16, 24])),
                 "stride": draw(st.sampled_from([1, 2]))}
        if letter == "X" or draw(st.booleans()) and letter != "T":
            kernels = [3] if stage["stride"] == 1 else [stage["stride"], 3]
            stage["transition"] = {"type": "conv", "kernel": draw(st.sampled_from(kernels)),
                                   "norm": draw(st.sampled_from(["before", "after", "none"]))}
        if letter == "C" and draw(st.booleans()):
            stage["block"] = {"kernel": 5, "se": 0, "stride_on": "depthwise"}
        total *= stage["stride"]
        stages.append(stage)
    token_head = letters[-1] in "PVL" and stages[-1]["stride"] == 1 and "transition" not in stages[-1] and draw(st.booleans())
    if token_head:
        stages[-1]["class_token"] = True
        stages[-1]["pos_embed"] = draw(st.booleans())
    size = total * draw(st.integers(1, 3))
    return {
        "input": {"channels": draw(st.sampled_from([1, 3])), "size": size},
        "classes": draw(st.sampled_from([0, 5])),
        "stem": stem,
        "layout": "-".join(letters),
        "blocks": {k: v for k, v in LEGEND.items() if k in letters},
        "stages": stages,
        "head": {"type": "token" if token_head else "pool", "hidden": draw(st.sampled_from([None, 16]))},
    }


@given(blueprints())
def test_valid_blueprints_build_and_match_the_plan(data):
    plan = composer.plan(composer.loads(yaml.safe_dump(data)))
    net = composer.build(plan).eval()
    c, h, w = plan.input_shape
    x = torch.randn(1, c, h, w)
    with torch.no_grad():
        features = net.forward_features(x)
        y = net.forward_head(features)
    assert list(features.shape[1:]) == plan.stages[-1].output_shape
    assert list(y.shape[1:]) == plan.output_shape
    assert torch.isfinite(y).all()  # NaN or infinity at initialisation is a bug
    assert composer.profile(plan).params == sum(p.numel() for p in net.parameters())
    assert composer.check(plan).ok  # the blocks' analytic costs agree with the trace


JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.just(10**9), st.floats(-1e3, 1e3, allow_nan=False),
    st.text(max_size=5), st.just([]), st.just({}), st.just({"type": "mbconv"}), st.just([8, 8]),
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated(draw):
    data = copy.deepcopy(draw(blueprints()))
    path = draw(st.sampled_from([p for p in _paths(data) if p]))
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        parent[path[-1]] = draw(JUNK)
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.sampled_from(["kernal", "chanels", "extra", "type"]))] = draw(JUNK)
    return data


@given(mutated())
def test_mutated_blueprints_validate_or_raise_blueprint_error(data):
    try:
        plan = composer.plan(composer.loads(yaml.safe_dump(data), file="mutant.yaml"))
    except BlueprintError as exc:
        assert exc.problems and all(p.file == "mutant.yaml" and p.message for p in exc.problems)
        return
    report = composer.profile(plan)  # meta tensors: absurd sizes cannot exhaust memory
    built = composer.build(plan, device="meta")  # nothing allocated either
    assert report.params == sum(p.numel() for p in built.parameters()) > 0
    _builds_and_runs_if_small(plan, report.params)


def _builds_and_runs_if_small(plan, params: int) -> None:
    """An accepted blueprint must build and give finite outputs; run the small ones for real."""
    c, h, w = plan.input_shape
    if params > 2_000_000 or h * w > 64 * 64:
        composer.build(plan, device="meta")
        return
    net = composer.build(plan).eval()
    with torch.no_grad():
        y = net(torch.randn(2, c, h, w))
    assert list(y.shape[1:]) == plan.output_shape
    assert torch.isfinite(y).all()


# text-level mutations: what an editor, a bad copy-paste or a hostile file can do to YAML text
SNIPPETS = st.sampled_from([
    "\0", "\x1b[31m", "\t", "\r", "\u2028", "\ud800", "\ufeff", "&a ", "*a", "<<: ", "!!bool ", "!!int ",
    "!!python/object:os.system ", "!!timestamp ", "[", "]", "{", "}", ": ", "- ", "#", "'", '"', "|", ">", "---\n",
    "yes", "012", "1:30", ".inf", ".nan", "1e300", "9" * 40, "-1", "0", "0.01", "true", "~", "\n  ", "\n",
    '"\\ud800"', '"\\x1b"',
])


@st.composite
def mutated_texts(draw):
    text = yaml.safe_dump(draw(blueprints()), sort_keys=False)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "duplicate", "replace"]))
        if kind == "insert":
            snippet = draw(st.one_of(SNIPPETS, st.text(max_size=3)))
            text = text[:i] + snippet + text[i:]
        elif kind == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 8)):]
        elif kind == "duplicate":
            lines = text.splitlines(keepends=True)
            j = draw(st.integers(0, len(lines) - 1))
            text = "".join(lines[: j + 1] + [lines[j]] + lines[j + 1:])
        else:
            j = draw(st.integers(0, max(0, len(text) - 1)))
            text = text[:j] + draw(st.sampled_from(list("0123456789-:.,[]{}&*!x "))) + text[j + 1:]
    return text


@given(mutated_texts())
def test_mutated_yaml_text_validates_or_raises_blueprint_error(text):
    try:
        plan = composer.plan(composer.loads(text, file="mutant.yaml"))
    except BlueprintError as exc:
        assert exc.problems and all(p.file in ("mutant.yaml", "<command line>") and p.message for p in exc.problems)
        str(exc).encode("utf-8")  # renderable: control characters and lone surrogates are escaped
        return
    _builds_and_runs_if_small(plan, composer.profile(plan).params)
