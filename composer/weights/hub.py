"""Weights by Hugging Face Hub name: `hf-hub:timm/convnext_tiny.fb_in1k` -> a file in the hub's cache.

    resolve("hf-hub:timm/convnext_tiny.fb_in1k")        # -> .../snapshots/<sha>/model.safetensors
    resolve("hf-hub:timm/resnet18.a1_in1k@<revision>")  # a branch, tag or commit

The spelling is timm's (`hf-hub:OWNER/NAME`). The file is fetched with huggingface_hub into its
usual cache (`HF_HUB_CACHE`, `HF_HOME`; default ~/.cache/huggingface/hub), and read from that
cache without the network when it is there, and always with `HF_HUB_OFFLINE=1`. A repository's
`model.safetensors` is preferred, `pytorch_model.bin` (read as every pickle is: tensors only) is
the fallback. The file is then read like any other checkpoint (composer/weights/read.py); timm's
repositories hold timm's layout, which the loader detects.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .read import weights_error

PREFIX = "hf-hub:"
FILES = ("model.safetensors", "pytorch_model.bin")  # in the order they are tried
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def is_hub_name(source: Any) -> bool:
    """True for a string or path spelled `hf-hub:...`."""
    return isinstance(source, (str, os.PathLike)) and os.fspath(source).startswith(PREFIX)


def parse(spec: str) -> tuple[str, str | None]:
    """`hf-hub:timm/convnext_tiny.fb_in1k@main` -> ("timm/convnext_tiny.fb_in1k", "main")."""
    body = spec[len(PREFIX):]
    repo, at, revision = body.partition("@")
    if not _REPO.fullmatch(repo) or ".." in repo or (at and (not re.fullmatch(r"[A-Za-z0-9._/-]{1,200}", revision) or ".." in revision.split("/"))):
        raise weights_error(spec[:200], "is not a Hugging Face Hub name",
                            "spell it as timm does: `hf-hub:OWNER/NAME`, e.g. `hf-hub:timm/convnext_tiny.fb_in1k`, "
                            "optionally `@REVISION`")
    return repo, revision or None


def architecture(spec: str) -> str:
    """The timm architecture a timm repository holds: `timm/convnext_tiny.fb_in1k` -> `convnext_tiny`."""
    repo, _ = parse(spec)
    return repo.split("/", 1)[1].split(".", 1)[0]


def resolve(spec: str | os.PathLike) -> Path:
    """The local file of a hub name: from the cache, or downloaded into it. WeightsError (one line,
    naming the spec) when it is neither cached nor reachable, or the repository has no weights file."""
    spec = os.fspath(spec)
    repo, revision = parse(spec)
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub import constants
        from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                            LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)
    except ImportError:
        raise weights_error(spec, "weights by hub name need huggingface_hub: pip install huggingface_hub") from None
    offline = bool(constants.HF_HUB_OFFLINE)
    missing: list[str] = []
    unreachable = False  # after one failed connection, the other file names are looked up in the cache only
    for filename in FILES:
        try:
            return Path(hf_hub_download(repo, filename, revision=revision, local_files_only=unreachable))
        except (RepositoryNotFoundError, GatedRepoError) as exc:  # before EntryNotFound: not its subclasses
            gated = isinstance(exc, GatedRepoError)
            raise weights_error(spec, f"the repository `{repo}` {'is gated' if gated else 'does not exist on the Hub'}",
                                "log in with `hf auth login` if it is private or gated" if gated else
                                "timm's names look like `timm/convnext_tiny.fb_in1k`") from None
        except RevisionNotFoundError:
            raise weights_error(spec, f"the repository `{repo}` has no revision `{revision}`") from None
        except LocalEntryNotFoundError:  # not in the cache, and the Hub not asked (offline) or not reachable
            missing.append(filename)
            unreachable = True
        except EntryNotFoundError:  # the Hub answered: this repository has no such file
            missing.append(filename)
            continue
        except (HfHubHTTPError, OSError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise weights_error(spec, f"cannot fetch from the Hugging Face Hub: {first}") from None
    cache = constants.HF_HUB_CACHE
    if offline:
        raise weights_error(spec, f"not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE=1 forbids downloading",
                            f"fetch it once online, without HF_HUB_OFFLINE, or copy the cache folder "
                            f"models--{repo.replace('/', '--')} into {cache}")
    if unreachable:
        raise weights_error(spec, f"not in the Hugging Face cache ({cache}), and the Hub could not be reached",
                            "check the network or a proxy (HTTPS_PROXY), or copy the cache folder "
                            f"models--{repo.replace('/', '--')} into {cache}")
    raise weights_error(spec, f"the repository has none of {', '.join(FILES)} in the cache ({cache}) or on the Hub",
                        "is the Hub reachable from here? set HF_HUB_OFFLINE=1 to use the cache only")
