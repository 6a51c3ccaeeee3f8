"""A Keras 3 model zoo for image restoration: MemNet, xUnit nets and NLRN, exact to the papers.

>>> import zoo
>>> zoo.list_models("x*")
>>> model = zoo.build("xdncnn")
>>> model = zoo.build("xdncnn", weights="official-s25")   # the authors' weights, fetched once
>>> zoo.list_pretrained("xdncnn")    # the cards: source, licence, our PSNR beside the paper's
>>> zoo.count_params(model)          # xUnit paper convention: 303616
"""

from zoo._tf import quiet_start

quiet_start()  # no TensorFlow C++ start-up log (see its docstring)

from zoo import layers, recipes  # noqa: E402  (registers the custom layers and optimiser)
from zoo.params import count_params
from zoo.pretrained import list_pretrained
from zoo.registry import build, describe, info, list_models, register
from zoo import models  # noqa: E402,F401  (registers every builder)

__all__ = ["build", "describe", "info", "list_models", "list_pretrained", "register",
           "count_params"]
__version__ = "0.1.0"
