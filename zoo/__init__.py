"""A Keras 3 model zoo for image restoration: MemNet, xUnit nets and NLRN, exact to the papers.

>>> import zoo
>>> zoo.list_models("x*")
>>> model = zoo.build("xdncnn")
>>> zoo.count_params(model)          # xUnit paper convention: 303616
"""

from zoo import layers, recipes  # registers the custom layers and optimiser for loading
from zoo.params import count_params
from zoo.registry import build, describe, info, list_models, register

__all__ = ["build", "describe", "info", "list_models", "register", "count_params"]
__version__ = "0.1.0"
