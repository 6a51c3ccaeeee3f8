"""Parameter counts under the conventions the papers use.

- ``"paper"`` (xUnit paper): conv kernels, depthwise kernels included, plus
  batch-norm gamma and beta.  No biases, no BN moving statistics, no PReLU.
- ``"kernels"`` (MemNet and NLRN papers): conv kernels only.
- ``"keras"``: everything Keras counts (``model.count_params()``).

Shared layers are counted once, as the papers count them.
"""

CONVENTIONS = {
    "paper": ("kernel", "depthwise_kernel", "gamma", "beta"),
    "kernels": ("kernel", "depthwise_kernel"),
}


def count_params(model, convention="paper"):
    """Number of parameters of ``model`` under ``convention``."""
    if convention == "keras":
        return model.count_params()
    if convention not in CONVENTIONS:
        raise ValueError(f"Unknown convention {convention!r}; "
                         f"use one of {sorted(CONVENTIONS) + ['keras']}.")
    names = CONVENTIONS[convention]
    unique = {id(w): w for w in model.weights}
    total = 0
    for weight in unique.values():
        if weight.path.rsplit("/", 1)[-1] in names:
            size = 1
            for dim in weight.shape:
                size *= dim
            total += size
    return total
