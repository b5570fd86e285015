"""Networks: the EfficientNet family (`efficientnet`) and its ImageNet weights (`params`).

The IQA head model lives in `tiqa.models.iqa`; the one evaluation forward of every network in
`tiqa.models.forward`.
"""

from tiqa.models.efficientnet import EfficientNet, EfficientNetConfig, count_params
from tiqa.models.params import classify, load_pretrained, pretrained_variants

__all__ = [
    "EfficientNet",
    "EfficientNetConfig",
    "classify",
    "count_params",
    "load_pretrained",
    "pretrained_variants",
]
