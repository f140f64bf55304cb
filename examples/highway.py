"""The CIFAR highway network from seed 000: transform-gate biases start at -13.

Convolutions are re-initialized by the model with ``kaiming_normal_`` (user code that
overwrites torch's default), the gate biases are filled with -13 in each block, and the
BatchNorms keep torch's defaults (weight 1, bias 0).
"""

import torch.nn as nn
import torch.nn.functional as F


class HwNetBasicblock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv_a = nn.Conv2d(
            inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.bn_a = nn.BatchNorm2d(planes)
        self.conv_b = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(planes)
        self.gate = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=True)
        self.downsample = downsample

        BIAS_INIT = -13
        self.gate.bias.data.fill_(BIAS_INIT)

    def forward(self, x):
        residual = x
        basicblock = F.relu(self.bn_a(self.conv_a(x)), inplace=True)
        basicblock = self.bn_b(self.conv_b(basicblock))
        t_value = F.sigmoid(self.gate(residual).mean())
        if self.downsample is not None:
            residual = self.downsample(x)
        return F.relu(residual * (1 - t_value) + basicblock * t_value, inplace=True)


class CifarResNet(nn.Module):
    def __init__(self, block, depth, num_classes):
        super().__init__()
        assert (depth - 2) % 6 == 0, "depth should be one of 8, 14, 20, 32, 44, 56, 110"
        layer_blocks = (depth - 2) // 6
        self.conv_1_3x3 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn_1 = nn.BatchNorm2d(16)
        self.inplanes = 16
        self.stage_1 = self._make_layer(block, 16, layer_blocks, 1)
        self.stage_2 = self._make_layer(block, 32, layer_blocks, 2)
        self.stage_3 = self._make_layer(block, 64, layer_blocks, 2)
        self.avgpool = nn.AvgPool2d(8)
        self.classifier = nn.Linear(64 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight)
                m.bias.data.zero_()

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.AvgPool2d(kernel_size=2, stride=2)
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = F.relu(self.bn_1(self.conv_1_3x3(x)), inplace=True)
        x = self.stage_3(self.stage_2(self.stage_1(x)))
        x = self.avgpool(x).flatten(1)
        return self.classifier(x)


def build_model(depth=8, num_classes=10):
    """The highway net at a CI-friendly depth (the seed trains depth 50 and 110)."""
    return CifarResNet(HwNetBasicblock, depth=depth, num_classes=num_classes)
