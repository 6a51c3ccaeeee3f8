"""Training recipes: the papers' optimisers, schedules and patch settings, by name.

A recipe is data (a frozen dataclass); ``get_recipe(name, **overrides)`` returns
a copy with fields replaced.  Step-based schedules are expressed as fractions
of the run so that a short run keeps the paper's shape:

- ``memnet`` (MemNet §4.2): SGD, momentum 0.9, weight decay 1e-4, lr 0.1 divided
  by 10 at fixed intervals (the paper: every 20 epochs), global-norm gradient
  clipping at 0.01 / lr (the VDSR-style "adjustable" clipping), batch 64,
  31x31 patches on a stride-21 grid.
- ``xunit`` (xUnit §4): Adam, lr 1e-3 decayed to 1e-4, batch 64, 80x80 random crops.
- ``dncnn``: the same as ``xunit`` (the xUnit paper trains its DnCNN baseline
  under the same configuration).
- ``nlrn`` (released code): Adam 1e-3 halved at fixed intervals (75k steps
  there), per-tensor gradient clipping by norm 2.5, batch 16, 43x43 patches.
- ``demo``: a few hundred Adam steps on small random crops, for the README's
  first command and CI.
"""

import dataclasses

import keras


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    optimizer: str                # "sgd" or "adam"
    learning_rate: float
    final_learning_rate: float    # reached at the end of the run (schedule "exponential")
    schedule: str                 # "exponential" or "step"
    decay_every: float = 0.0      # "step": fraction of the run between decays
    decay_factor: float = 0.1     # "step": multiplier at each decay
    momentum: float = 0.0
    weight_decay: float = 0.0
    adjustable_clip: float = 0.0  # global-norm clip at adjustable_clip / lr (MemNet)
    clipnorm: float = 0.0         # per-tensor clip (NLRN)
    batch_size: int = 16
    patch_size: int = 48
    patches: str = "random"       # "random" or "grid"
    stride: int = 0               # grid stride (0: patch size)
    steps: int = 1000
    steps_per_epoch: int = 100

    def replace(self, **overrides):
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - fields
        if unknown:
            raise ValueError(f"recipe {self.name!r} has no field(s) {sorted(unknown)}; "
                             f"fields: {', '.join(sorted(fields))}")
        return dataclasses.replace(self, **overrides)


RECIPES = {
    "memnet": Recipe("memnet", "sgd", 0.1, 0.0, "step", decay_every=1 / 3, decay_factor=0.1,
                     momentum=0.9, weight_decay=1e-4, adjustable_clip=0.01, batch_size=64,
                     patch_size=31, patches="grid", stride=21, steps=60_000,
                     steps_per_epoch=1000),
    "xunit": Recipe("xunit", "adam", 1e-3, 1e-4, "exponential", batch_size=64, patch_size=80,
                    steps=50_000, steps_per_epoch=1000),
    "dncnn": Recipe("dncnn", "adam", 1e-3, 1e-4, "exponential", batch_size=64, patch_size=80,
                    steps=50_000, steps_per_epoch=1000),
    "nlrn": Recipe("nlrn", "adam", 1e-3, 0.0, "step", decay_every=0.25, decay_factor=0.5,
                   clipnorm=2.5, batch_size=16, patch_size=43, steps=300_000,
                   steps_per_epoch=1000),
    "demo": Recipe("demo", "adam", 1e-3, 1e-4, "exponential", batch_size=16, patch_size=40,
                   steps=300, steps_per_epoch=50),
}


def get_recipe(name, **overrides):
    """The recipe ``name`` with fields replaced by ``overrides``."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    return RECIPES[name].replace(**overrides)


def learning_rate_schedule(recipe, total_steps):
    """The recipe's learning rate as a ``keras.optimizers.schedules`` object over ``total_steps``."""
    total_steps = max(int(total_steps), 1)
    if recipe.schedule == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            recipe.learning_rate, total_steps, recipe.final_learning_rate / recipe.learning_rate)
    if recipe.schedule == "step":
        every = max(int(round(recipe.decay_every * total_steps)), 1)
        boundaries = list(range(every, total_steps, every))
        values = [recipe.learning_rate * recipe.decay_factor ** i for i in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    raise ValueError(f"unknown schedule {recipe.schedule!r}")


@keras.saving.register_keras_serializable(package="zoo")
class AdjustableClipSGD(keras.optimizers.SGD):
    """SGD whose gradients are clipped to a global norm of ``theta / lr`` (MemNet, after VDSR).

    With a large learning rate the clip is tight; as the rate decays, larger
    gradients pass, so the effective step ``lr * g`` stays bounded by ``theta``.
    """

    def __init__(self, theta=0.01, **kwargs):
        super().__init__(**kwargs)
        self.theta = float(theta)

    def _clip_gradients(self, grads):
        lr = self._get_current_learning_rate()
        limit = self.theta / keras.ops.cast(lr, "float32")
        squares = [keras.ops.sum(keras.ops.square(keras.ops.cast(g, "float32")))
                   for g in grads if g is not None]
        norm = keras.ops.sqrt(sum(squares))
        scale = keras.ops.minimum(1.0, limit / keras.ops.maximum(norm, 1e-12))
        return [None if g is None else g * keras.ops.cast(scale, g.dtype) for g in grads]

    def get_config(self):
        return {**super().get_config(), "theta": self.theta}


def make_optimizer(recipe, total_steps):
    """The recipe's optimiser with its learning-rate schedule over ``total_steps``."""
    lr = learning_rate_schedule(recipe, total_steps)
    if recipe.optimizer == "sgd":
        kwargs = dict(learning_rate=lr, momentum=recipe.momentum,
                      weight_decay=recipe.weight_decay or None)
        if recipe.clipnorm:
            kwargs["clipnorm"] = recipe.clipnorm
        if recipe.adjustable_clip:
            return AdjustableClipSGD(theta=recipe.adjustable_clip, **kwargs)
        return keras.optimizers.SGD(**kwargs)
    if recipe.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr, clipnorm=recipe.clipnorm or None,
                                     weight_decay=recipe.weight_decay or None)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}")
