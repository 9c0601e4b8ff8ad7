"""Composer blueprints as timm model names, for scripts that only know `timm.create_model`.

    import timm
    from composer.tools.timm_adapter import register_blueprints
    register_blueprints()                        # the shipped blueprints: composer_coatnet0, composer_timm_resnet50, ...
    net = timm.create_model("composer_coatnet0", num_classes=10, img_size=64)

`register(path, name)` registers one blueprint file. Each name's entrypoint takes timm's
arguments: `num_classes`, `in_chans`, `img_size`, `drop_path_rate`, `global_pool`,
`features_only` with `out_indices`, and `pretrained_cfg_overlay=dict(file=CHECKPOINT)` for
weights (composer's layout or timm's); `pretrained=True` alone has no weights to download and is
refused. timm is optional: without it, registering raises `TimmUnavailable` saying how to install
it; the entrypoints themselves (`entrypoint(path)`) work without timm.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

from ..errors import ComposerError

SHIPPED = Path(__file__).resolve().parents[1] / "blueprints"

# timm's preprocessing of the architectures blueprints/timm/ is named after (from timm's default
# configs), so that `pretrained_cfg` says how the checkpoints those blueprints load were trained
_INCEPTION = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
_TIMM_PREPROCESSING = {
    "resnet18": {"crop_pct": 0.95}, "resnet50": {"crop_pct": 0.95}, "seresnet50": {"crop_pct": 0.95},
    "mobilenetv2_100": {"crop_pct": 0.875}, "mobilenetv2_050": {"crop_pct": 0.875},
    "efficientnet_b0": {"crop_pct": 0.875}, "convnext_atto": {"crop_pct": 0.875},
    "convnext_tiny": {"crop_pct": 0.95}, "convnext_small": {"crop_pct": 0.95},
    "vit_tiny_patch16_224": {"crop_pct": 0.9, **_INCEPTION}, "vit_small_patch16_224": {"crop_pct": 0.9, **_INCEPTION},
    "vit_base_patch16_224": {"crop_pct": 0.9, **_INCEPTION}, "convit_tiny": {"crop_pct": 0.875},
    "convit_small": {"crop_pct": 0.875}, "coatnet_nano_rw_224": {"crop_pct": 0.9, **_INCEPTION},
    "coatnet_0_rw_224": {"crop_pct": 0.95, **_INCEPTION}, "coatnet_1_rw_224": {"crop_pct": 0.95, **_INCEPTION},
    "coatnet_0_224": {"crop_pct": 0.95, **_INCEPTION},
}

# timm's register_model reads the pretrained configs of a model from its module's `default_cfgs`
default_cfgs: dict[str, dict] = {}
__all__ = ["register", "register_blueprints", "entrypoint", "TimmUnavailable"]


class TimmUnavailable(ComposerError, ImportError):
    """timm cannot be imported here."""


def _timm():
    try:
        import timm.models  # noqa: F401  (timm needs torchvision too)
        from timm.models import register_model
    except ImportError as exc:
        raise TimmUnavailable(f"registering composer blueprints as timm models needs timm, which cannot be imported "
                              f"here ({exc}): pip install timm (it needs torchvision)") from None
    return register_model


def _preprocessing(path: Path) -> dict:
    return {"interpolation": "bicubic", **_TIMM_PREPROCESSING[path.stem]} if path.parent.name == "timm" and \
        path.stem in _TIMM_PREPROCESSING else {}


def entrypoint(path: str | os.PathLike, name: str | None = None) -> Callable[..., Any]:
    """A timm-style model function for the blueprint at `path` (see the module's docstring)."""
    path = Path(path)
    name = name or f"composer_{path.stem}"

    def create(pretrained: bool = False, *, num_classes: int | None = None, in_chans: int | None = None,
               img_size: int | None = None, drop_path_rate: float | None = None, global_pool: str | None = None,
               features_only: bool = False, out_indices: Any = None, pretrained_cfg: Any = None,
               pretrained_cfg_overlay: dict | None = None, feature_cls: str | None = None, cache_dir: Any = None,
               **unknown: Any):
        if unknown:
            raise TypeError(f"{name}: arguments composer networks do not take: {', '.join(sorted(unknown))}")
        weights = (pretrained_cfg_overlay or {}).get("file")
        if pretrained and weights is None:
            raise ValueError(f"{name}: composer networks have no weights to download; pass a checkpoint with "
                             f"pretrained_cfg_overlay=dict(file=PATH) (composer's layout or timm's)")
        overrides = {key: value for key, value in (("classes", num_classes), ("input.channels", in_chans),
                                                   ("input.size", img_size), ("drop_path", drop_path_rate))
                     if value is not None}
        from ..blueprint.reading import read_blueprint
        from ..weights.model import build_network

        net = build_network(read_blueprint(path, overrides), weights=weights if pretrained or weights else None)
        net.pretrained_cfg.update({**_preprocessing(path), "architecture": name})
        if global_pool is not None:
            net.reset_classifier(net.num_classes, global_pool)
        if features_only:
            from ..network.features import FeatureNet

            backbone = FeatureNet(net, out_indices)
            backbone.pretrained_cfg = backbone.default_cfg = net.pretrained_cfg
            return backbone
        return net

    create.__name__ = create.__qualname__ = name
    create.__module__ = __name__
    create.__doc__ = f"composer network of {path}"
    return create


def register(path: str | os.PathLike, name: str | None = None) -> str:
    """Register the blueprint at `path` as timm model `name` (default `composer_<file stem>`)."""
    from ..blueprint.reading import read_blueprint
    from ..network.guard import meta_network
    from ..planning.planner import plan

    register_model = _timm()
    path = Path(path)
    fn = entrypoint(path, name)
    net = meta_network(plan(read_blueprint(path)))
    cfg = {k: v for k, v in net.pretrained_cfg.items() if k != "architecture"}
    default_cfgs[fn.__name__] = {**cfg, **_preprocessing(path)}
    setattr(sys.modules[__name__], fn.__name__, fn)
    register_model(fn)
    return fn.__name__


def register_blueprints(folder: str | os.PathLike | None = None, prefix: str = "composer_") -> list[str]:
    """Register every blueprint of `folder` (default: the shipped ones, blueprints/*.yaml as
    `composer_<name>` and blueprints/timm/*.yaml as `composer_timm_<name>`); returns the names."""
    _timm()
    if folder is None:
        if not SHIPPED.is_dir():
            raise FileNotFoundError(f"the shipped blueprints are not here ({SHIPPED}); give the folder of yours")
        return (register_blueprints(SHIPPED, prefix) + register_blueprints(SHIPPED / "timm", f"{prefix}timm_"))
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    return [register(p, f"{prefix}{p.stem}") for p in sorted(folder.glob("*.yaml"))]
