"""Small real models for the explicit-init corpus: one way of getting initial values each."""

import torch
from torch import nn


class Recurrent(nn.Module):
    """LSTM and GRU: every weight drawn by a loop of uniform_ calls in reset_parameters."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 6, num_layers=2)
        self.gru = nn.GRU(3, 5, bidirectional=True)


class PaddedEmbedding(nn.Module):
    """Embedding with padding_idx: a normal_ draw, then one row zeroed through a view."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4, padding_idx=2)


class Attention(nn.Module):
    """MultiheadAttention: out_proj's default draws are overwritten by _reset_parameters."""

    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2)


class Encoder(nn.Module):
    """TransformerEncoder: the layer passed in is deep-copied; its own draws reach no tensor."""

    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, 16)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


class Normed(nn.Module):
    """weight_norm and spectral_norm parametrizations (spectral_norm draws u and v)."""

    def __init__(self):
        super().__init__()
        self.wn = nn.utils.parametrizations.weight_norm(nn.Linear(3, 4))
        self.sn = nn.utils.parametrizations.spectral_norm(nn.Linear(4, 5))


class Tied(nn.Module):
    """An output head tied to the embedding; the head's own draw is thrown away."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(12, 6)
        self.head = nn.Linear(6, 12, bias=False)
        self.head.weight = self.embed.weight


class RawParams(nn.Module):
    """nn.Parameter(torch.randn(...)), a thrown-away draw, buffers from literals and .data."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(3, 2) * 0.02)
        torch.randn(5)  # drawn and thrown away
        self.pos = nn.Parameter(torch.zeros(1, 4))
        self.register_buffer("steps", torch.tensor([1, 2, 3]))
        self.fc = nn.Linear(2, 2)
        self.fc.weight.data = torch.full((2, 2), 0.5)
        self.gate = nn.Linear(3, 3)
        self.gate.bias.data.fill_(-13)


class Applied(nn.Module):
    """trunc_normal_ and orthogonal_ applied over the default init with model.apply."""

    def __init__(self):
        super().__init__()
        self.b = nn.Linear(4, 6)
        self.a = nn.Linear(6, 6)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.in_features == m.out_features:
                nn.init.orthogonal_(m.weight)
            nn.init.zeros_(m.bias)


class PrivateGenerator(nn.Module):
    """Draws from a private torch.Generator: cannot be made explicit."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        gen = torch.Generator().manual_seed(123)
        nn.init.normal_(self.fc.weight, generator=gen)


def build_gpt2():
    """A small GPT-2 from transformers (code no one here wrote)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=16)
    return GPT2LMHeadModel(cfg)


class DtypeView(nn.Module):
    """Writes a float parameter through an int32 view of its bytes: no explicit code for it."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(4))
        self.w.data.view(torch.int32).fill_(7)


def build_swin():
    """A small Swin from transformers: relative-position index from meshgrid/stack/flatten."""
    from transformers import SwinConfig, SwinModel

    cfg = SwinConfig(
        image_size=16, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=2
    )
    return SwinModel(cfg)


def build_whisper():
    """A small Whisper from transformers: sinusoidal positions from arange(L).view(-1, 1)."""
    from transformers import WhisperConfig, WhisperModel

    cfg = WhisperConfig(
        vocab_size=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        num_mel_bins=8,
        max_source_positions=32,
        max_target_positions=16,
    )
    return WhisperModel(cfg)
