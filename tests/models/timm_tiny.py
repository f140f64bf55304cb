"""Small timm models (random init, no pretrained weights) for cross-release drift checks.

timm imports torchvision, so these need an environment with a torchvision that imports
beside its torch (here torch 2.14.1 + torchvision 0.29.1).
"""

from __future__ import annotations

from typing import Any


def _create(name: str, **kwargs: Any) -> Any:
    import timm

    return timm.create_model(name, pretrained=False, **kwargs)


def vit() -> Any:
    """ViT (tiny, 2 blocks)."""
    return _create("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=32,
                   num_heads=2, num_classes=10)  # fmt: skip


def resnet18() -> Any:
    """ResNet-18."""
    return _create("resnet18", num_classes=10)


def convnext_atto() -> Any:
    """ConvNeXt-atto."""
    return _create("convnext_atto", num_classes=10)


def efficientnet_b0() -> Any:
    """EfficientNet-B0."""
    return _create("efficientnet_b0", num_classes=10)


def mobilenetv3() -> Any:
    """MobileNetV3-small."""
    return _create("mobilenetv3_small_100", num_classes=10)


def deit() -> Any:
    """DeiT (tiny, 2 blocks, distilled)."""
    return _create("deit_tiny_distilled_patch16_224", img_size=32, patch_size=8, depth=2,
                   embed_dim=32, num_heads=2, num_classes=10)  # fmt: skip


ARCHITECTURES = ("vit", "resnet18", "convnext_atto", "efficientnet_b0", "mobilenetv3", "deit")
