"""A GGUF file converted for transformers once, then loaded from a plain model folder.

transformers reads a GGUF file by parsing it, rebuilding its tokenizer and dequantising
every tensor to float32, on every load: about 17 s for the embedded 135M model on 2 cores
(4.6 s of it the tokenizer), paid by each process that loads it (`train`, each rank of a
multi-process run, `train-judge`'s three loads, every `hf:smollm2` judge or therapist).
What comes out is an ordinary transformers model, so it is saved once (config, float32
safetensors, tokenizer) and later loads read that folder: 0.4 s.

The folder lives under `$XDG_CACHE_HOME/therapygym/dequantised` (else ~/.cache), named by
the file's stem and a digest of its resolved path, size and modification time and of the
transformers version (the converter), so a changed file or a new converter gets a new
folder and an old one is never read for it. It is written under a temporary name and
renamed into place, so processes converting at once never see half a folder; the first
rename wins, and the temporary folder of a conversion killed mid-way is removed by a later
one once it is an hour old. Under `accelerate launch` transformers writes a model's files
only on rank 0 of the process group (its `save_pretrained` skips the others), so the other
ranks of a run that finds no folder save a tokenizer alone: that is never renamed into
place, and those ranks read the GGUF file while rank 0 fills the cache. Where the cache
cannot be written, the GGUF file is read as before. Nothing about a model's identity
changes: `hf:` records still name the GGUF file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from therapygym.models.cache import cache_home


def cache_root() -> Path:
    """Where converted folders go: `$XDG_CACHE_HOME/therapygym/dequantised`."""
    return cache_home() / "dequantised"


def converted_folder(gguf: Path) -> Path:
    """The folder this file's conversion has (or would have) in the cache."""
    import transformers

    stat = gguf.stat()
    key = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return cache_root() / f"{gguf.stem}-{digest}"


_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


def is_converted(folder: Path) -> bool:
    """A finished conversion: its config and its weights (a folder appears only by its
    final rename, and only a whole one is renamed)."""
    return (folder / "config.json").is_file() and any((folder / w).is_file() for w in _WEIGHTS)


def convert(gguf: Path, folder: Path) -> bool:
    """Dequantise `gguf` into `folder` (model and tokenizer); False where the cache cannot
    be written, so the caller reads the GGUF file itself."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned(folder)
        partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    except OSError:
        return False
    try:
        source = {"gguf_file": gguf.name, "local_files_only": True}
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **source)
        plain(model)
        model.save_pretrained(partial)
        AutoTokenizer.from_pretrained(gguf.parent, **source).save_pretrained(partial)
        if not is_converted(partial):  # a rank other than 0: transformers saved no model
            shutil.rmtree(partial, ignore_errors=True)
            return False
        os.rename(partial, folder)
    except OSError:  # another process renamed its copy first, or the disk is full
        shutil.rmtree(partial, ignore_errors=True)
        return is_converted(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return True


def remove_abandoned(folder: Path, older_than_s: float = 3600) -> None:
    """Remove the temporary folders of conversions of this file killed mid-way: half a
    gigabyte each for the embedded model. Only those untouched for an hour (a live one
    writes within seconds), so a process converting now keeps its own."""
    cutoff = time.time() - older_than_s
    for partial in folder.parent.glob(f".{folder.name}-*"):
        with contextlib.suppress(OSError):
            if partial.stat().st_mtime < cutoff:
                shutil.rmtree(partial)


def plain(model: Any) -> None:
    """Forget that the weights came from a quantised file: they are float32 now, and a
    model marked quantised refuses training and saves a quantisation config."""
    model.hf_quantizer = None
    model.is_quantized = False
    model.config.quantization_config = None
