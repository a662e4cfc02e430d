"""Reference architectures, readable PyTorch with torchvision's module names.

Installed as ``archscope.zoo`` (``pyproject.toml`` maps it to this folder). The catalogue of names,
default inputs and published parameter counts is :mod:`archscope.registry`.
"""
