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
one once it is an hour old. A rank of `accelerate launch` converts in a child process
(`convert` says why), and a folder without a model's config and weights is never renamed
into place. Where the cache cannot be written, the GGUF file is read as before. Nothing
about a model's identity changes: `hf:` records still name the GGUF file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
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


# the conversion as a child process runs it: `python -c _CHILD <gguf> <folder>`
_CHILD = (
    "import sys; from pathlib import Path; from therapygym.models.dequantised import "
    "convert_here; sys.exit(0 if convert_here(Path(sys.argv[1]), Path(sys.argv[2])) else 1)"
)


def convert(gguf: Path, folder: Path) -> bool:
    """Dequantise `gguf` into `folder` (model and tokenizer); False where the cache cannot
    be written, so the caller reads the GGUF file itself.

    Inside a torch.distributed process group (a rank of `accelerate launch`) the conversion
    runs in a child process, which has none: there transformers would save the model on
    rank 0 only, and under ZeRO-3 it would load the file partitioned, each parameter a
    collective that the other ranks, loading otherwise or not at all, never join (measured:
    a two-rank ZeRO-3 run on the embedded model hung in its first load). Every rank then
    loads the same finished folder (or, where none can be written, the file)."""
    if _in_process_group():
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, str(gguf), str(folder)], capture_output=True
        )
        return child.returncode == 0 and is_converted(folder)
    return convert_here(gguf, folder)


def _in_process_group() -> bool:
    import torch.distributed as dist

    return bool(dist.is_available() and dist.is_initialized())


def convert_here(gguf: Path, folder: Path) -> bool:
    """`convert` in this process (which must not be a rank of a process group)."""
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
        if not is_converted(partial):  # transformers saved no model (see `convert`)
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
