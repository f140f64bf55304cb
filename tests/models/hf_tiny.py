"""Small-config transformers architectures (hidden 32, 2 layers) for cross-release drift checks.

Each function builds one architecture from a config whose arguments mean the same in
transformers 4.46 and 5.x, so the same target can be frozen under several releases:
``initaudit matrix tests/models/hf_tiny.py:bert --env transformers==4.57.6 --env transformers==5.0.0``.
"""

from __future__ import annotations

from typing import Any

_BERTISH = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    vocab_size=100,
    max_position_embeddings=64,
)
_DECODER = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    intermediate_size=64,
    vocab_size=100,
    max_position_embeddings=64,
)
_SEQ2SEQ = dict(
    d_model=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    vocab_size=100,
)


def _auto(config: Any) -> Any:
    from transformers import AutoModel

    return AutoModel.from_config(config)


def gpt2() -> Any:
    """GPT-2."""
    from transformers import GPT2Config

    return _auto(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64, vocab_size=100))


def bert() -> Any:
    """BERT."""
    from transformers import BertConfig

    return _auto(BertConfig(**_BERTISH))


def roberta() -> Any:
    """RoBERTa."""
    from transformers import RobertaConfig

    return _auto(RobertaConfig(**_BERTISH))


def distilbert() -> Any:
    """DistilBERT."""
    from transformers import DistilBertConfig

    return _auto(
        DistilBertConfig(
            dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=100, max_position_embeddings=64
        )
    )


def deberta_v2() -> Any:
    """DeBERTa-v2."""
    from transformers import DebertaV2Config

    return _auto(DebertaV2Config(**_BERTISH))


def llama() -> Any:
    """Llama."""
    from transformers import LlamaConfig

    return _auto(LlamaConfig(**_DECODER))


def mistral() -> Any:
    """Mistral."""
    from transformers import MistralConfig

    return _auto(MistralConfig(**_DECODER))


def qwen2() -> Any:
    """Qwen2."""
    from transformers import Qwen2Config

    return _auto(Qwen2Config(**_DECODER))


def opt() -> Any:
    """OPT."""
    from transformers import OPTConfig

    return _auto(
        OPTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            ffn_dim=64,
            vocab_size=100,
            max_position_embeddings=64,
            word_embed_proj_dim=32,
        )
    )


def t5() -> Any:
    """T5."""
    from transformers import T5Config

    return _auto(T5Config(d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16, vocab_size=100))


def bart() -> Any:
    """BART."""
    from transformers import BartConfig

    return _auto(BartConfig(**_SEQ2SEQ, max_position_embeddings=64))


def whisper() -> Any:
    """Whisper."""
    from transformers import WhisperConfig

    return _auto(
        WhisperConfig(
            **_SEQ2SEQ,
            num_mel_bins=16,
            max_source_positions=32,
            max_target_positions=32,
            pad_token_id=1,
            bos_token_id=2,
            eos_token_id=3,
            decoder_start_token_id=2,
            suppress_tokens=[],
            begin_suppress_tokens=[],
        )
    )


def vit() -> Any:
    """ViT."""
    from transformers import ViTConfig

    return _auto(
        ViTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=32,
            patch_size=8,
        )
    )


def clip() -> Any:
    """CLIP (text and vision towers)."""
    from transformers import CLIPConfig

    text = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=100,
        max_position_embeddings=64,
    )
    vision = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    return _auto(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32))


def swin() -> Any:
    """Swin."""
    from transformers import SwinConfig

    return _auto(
        SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                   window_size=4)
    )  # fmt: skip


def convnext() -> Any:
    """ConvNeXt."""
    from transformers import ConvNextConfig

    return _auto(ConvNextConfig(num_stages=2, hidden_sizes=[16, 32], depths=[1, 1]))


ARCHITECTURES = (
    "gpt2", "bert", "roberta", "distilbert", "deberta_v2", "llama", "mistral", "qwen2", "opt",
    "t5", "bart", "whisper", "vit", "clip", "swin", "convnext",
)  # fmt: skip


def saved_bert(where: str) -> None:
    """Save a small BERT base model to ``where`` (a local checkpoint: no hub access)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(1)
    cfg = BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        vocab_size=100, max_position_embeddings=16,
    )  # fmt: skip
    BertModel(cfg).save_pretrained(where)


def classifier_from_checkpoint(ckpt: str) -> Any:
    """A sequence classifier loaded from a local checkpoint: its head is newly initialized."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(ckpt, num_labels=3)
