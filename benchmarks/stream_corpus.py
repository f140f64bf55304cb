"""Stream every real model that freezes in memory: ``--stream`` digests vs in-memory ones.

For each model of the corpus (torchvision classification and detection models, a set of timm
models, transformers models from configs, the test tree's corpus), this freezes it in memory
(``freeze --digest-only``'s digests) and streamed (``--stream``), and compares them bit for bit:
per-tensor hash, statistics, aliases, ``rng_before``, and the final RNG digest. Each model ends
as ``equal``, ``mismatch``, ``refused`` (a one-line StreamError), ``error`` (anything else: an
internal error) or ``skipped`` (the in-memory freeze itself failed, or it is over --max-params).

    python benchmarks/stream_corpus.py --out after.jsonl              # the whole corpus
    python benchmarks/stream_corpus.py --only regnet,ssdlite --out x.jsonl
    PYTHONPATH=/path/to/older/checkout python benchmarks/stream_corpus.py --reference ref.jsonl

Runs in an environment with torchvision and timm (torch 2.14.1 + torchvision 0.29.1: the
torchvision wheel for torch 2.13.0 does not import beside the CPU torch). The in-memory digests
do not depend on the streaming code, so ``--reference FILE`` reuses those of an earlier run.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve()

TIMM = [
    ("regnety_002", {}),
    ("regnetx_002", {}),
    ("vit_tiny_patch16_224", {"drop_path_rate": 0.1}),
    ("deit_tiny_patch16_224", {"drop_path_rate": 0.1}),
    ("swin_tiny_patch4_window7_224", {"drop_path_rate": 0.2}),
    ("convnext_atto", {"drop_path_rate": 0.1}),
    ("efficientnet_b0", {"drop_path_rate": 0.2}),
    ("mobilenetv3_small_100", {}),
    ("resnet18", {}),
    ("resnet50d", {"drop_path_rate": 0.05}),
    ("levit_128s", {}),
    ("mixer_s16_224", {"drop_path_rate": 0.1}),
    ("coatnet_nano_rw_224", {}),
    ("maxvit_nano_rw_256", {}),
    ("efficientformer_l1", {}),
    ("poolformer_s12", {"drop_path_rate": 0.1}),
    ("edgenext_xx_small", {}),
    ("mobilevit_xxs", {}),
    ("ghostnet_100", {}),
    ("cait_xxs24_224", {}),
    ("pvt_v2_b0", {}),
    ("beit_base_patch16_224", {"drop_path_rate": 0.1}),
    ("eva02_tiny_patch14_224", {}),
    ("fastvit_t8", {}),
    ("repvit_m1", {}),
]


def timm_model(name: str, **kwargs):
    """A timm model by name, without pretrained weights."""
    import timm

    return timm.create_model(name, pretrained=False, **kwargs)


def hf_convnext():
    """transformers ConvNeXt (drop-path rates from linspace(...).tolist())."""
    from transformers import ConvNextConfig, ConvNextModel

    return ConvNextModel(ConvNextConfig(drop_path_rate=0.1))


def hf_vit():
    """transformers ViT-base from its default config."""
    from transformers import ViTConfig, ViTModel

    return ViTModel(ViTConfig())


def hf_gpt2():
    """transformers GPT-2 small from its default config (lm_head tied)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config())


def hf_bert():
    """transformers BERT-base from its default config."""
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig())


def hf_swin():
    """transformers Swin-tiny with drop path."""
    from transformers import SwinConfig, SwinModel

    return SwinModel(SwinConfig(drop_path_rate=0.1))


def hf_regnet():
    """transformers RegNet from its default config."""
    from transformers import RegNetConfig, RegNetModel

    return RegNetModel(RegNetConfig())


def corpus() -> list[tuple[str, str, dict]]:
    """``(label, target spec, kwargs)`` for every model of the corpus."""
    out: list[tuple[str, str, dict]] = []
    import torchvision.models as tvm
    import torchvision.models.detection as tvd

    for name in tvm.list_models(module=tvm):
        out.append((f"tv:{name}", f"torchvision.models:{name}", {}))
    for name in tvm.list_models(module=tvd):
        out.append((f"tv.det:{name}", f"torchvision.models.detection:{name}",
                    {"weights_backbone": None}))  # fmt: skip
    for name, kw in TIMM:
        out.append((f"timm:{name}", f"{HERE}:timm_model", {"name": name, **kw}))
    for fn in ("hf_convnext", "hf_vit", "hf_gpt2", "hf_bert", "hf_swin", "hf_regnet"):
        out.append((f"hf:{fn[3:]}", f"{HERE}:{fn}", {}))
    import inspect

    from torch import nn

    for module in ("corpus", "codegen_corpus", "modern_vision", "tied", "init_bugs", "hf_tiny",
                   "timm_tiny", "stream_models"):  # fmt: skip
        path = ROOT / "tests" / "models" / f"{module}.py"
        ns: dict = {"__name__": f"corpus_{module}"}
        exec(compile(path.read_text(), str(path), "exec"), ns)
        for name, obj in ns.items():
            if name.startswith("_") or getattr(obj, "__module__", None) != ns["__name__"]:
                continue
            if name in ("ReadsValues", "ReadsADrawnValue", "ClockInit"):  # refused, or not
                # reproducible by design (ClockInit seeds from the clock)
                continue
            if inspect.isclass(obj) and issubclass(obj, nn.Module):
                sig = inspect.signature(obj)
            elif inspect.isfunction(obj):
                sig = inspect.signature(obj)
            else:
                continue
            if any(p.default is p.empty and p.kind is not p.VAR_KEYWORD and
                   p.kind is not p.VAR_POSITIONAL for p in sig.parameters.values()):
                continue  # fmt: skip
            out.append((f"{module}:{name}", f"{path}:{name}", {}))
    return out


def compare(real: dict, streamed: dict) -> str | None:
    """None when the streamed manifest's digests equal the in-memory ones, else the first difference."""
    a, b = real["tensors"], streamed["tensors"]
    if [t["name"] for t in a] != [t["name"] for t in b]:
        return "tensor names or order differ"
    for x, y in zip(a, b, strict=True):
        for key in ("hash", "stats", "aliases", "shape", "dtype", "rng_before"):
            if x.get(key) != y.get(key):
                return f"{x['name']}: {key} differs"
    if real["rng"]["torch_after"] != streamed["rng"]["torch_after"]:
        return "final RNG digest differs"
    return None


def digests(manifest: dict) -> dict:
    keys = ("name", "hash", "stats", "aliases", "shape", "dtype", "rng_before")
    return {
        "tensors": [{k: t.get(k) for k in keys} for t in manifest["tensors"]],
        "rng": {"torch_after": manifest["rng"]["torch_after"]},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated substrings of the labels to run")
    ap.add_argument("--out", type=Path, required=True, help="JSON lines, one per model")
    ap.add_argument("--reference", type=Path, help="reuse in-memory digests of an earlier --out")
    ap.add_argument("--max-params", type=float, default=150e6, help="skip larger models")
    opts = ap.parse_args()

    import torch

    from initaudit import target
    from initaudit.errors import StreamError
    from initaudit.freeze import freeze
    from initaudit.freeze.stream import stream_freeze
    from initaudit.trace.meta import meta_size

    torch.set_num_threads(1)
    reference: dict[str, dict] = {}

    def load_reference() -> None:  # re-read: the reference run may still be writing it
        for line in opts.reference.read_text().splitlines():
            row = json.loads(line)
            if row.get("real"):
                reference[row["label"]] = row["real"]
    models = corpus()
    if opts.only:
        keys = opts.only.split(",")
        models = [m for m in models if any(k in m[0] for k in keys)]
    counts: dict[str, int] = {}
    with opts.out.open("w") as out:
        for label, spec, kwargs in models:
            t0 = time.perf_counter()
            row: dict = {"label": label}
            try:
                tg = target.resolve(spec, kwargs)
                size = meta_size(tg.build, None)
                if size is not None and size / 4 > opts.max_params:
                    row.update(status="skipped", detail=f"{size / 4 / 1e6:.0f} M parameters")
                    raise _Done
                if opts.reference and label not in reference:
                    load_reference()
                real = reference.get(label)
                if real is None:
                    try:
                        snap, _ = freeze(tg, 0)
                    except Exception as exc:
                        row.update(status="skipped", detail=f"in-memory: {exc!r}"[:300])
                        raise _Done from None
                    real = digests(snap.manifest)
                    del snap
                row["real"] = real
                try:
                    streamed, _ = stream_freeze(tg, 0)
                except StreamError as exc:
                    row.update(status="refused", detail=str(exc)[:400])
                    raise _Done from None
                except Exception as exc:
                    tb = traceback.format_exception(exc)[-3:]
                    row.update(status="error", detail=("".join(tb))[-600:])
                    raise _Done from None
                diff = compare(real, digests(streamed.manifest))
                row.update(status="equal" if diff is None else "mismatch", detail=diff)
            except _Done:
                pass
            except Exception as exc:
                row.update(status="skipped", detail=f"{exc!r}"[:300])
            row["seconds"] = round(time.perf_counter() - t0, 1)
            counts[row["status"]] = counts.get(row["status"], 0) + 1
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(f"{row['status']:9} {row['seconds']:6.1f}s {label} {row.get('detail') or ''}"[:300],
                  flush=True)  # fmt: skip
            gc.collect()
    tried = sum(v for k, v in counts.items() if k != "skipped")
    print(f"{tried} models tried: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    return 0


class _Done(Exception):
    pass


if __name__ == "__main__":
    sys.exit(main())
