"""Model registry in the spirit of timm: name -> builder + what a user needs to know.

Each builder in ``zoo/models`` is decorated with :func:`register`; nothing else
has to change when a model is added.  ``build(name, **overrides)`` forwards the
overrides to the builder after checking that it takes them.
"""

import dataclasses
import difflib
import fnmatch
import inspect

from zoo.data.tasks import PAPER_ONLY_TASKS, TASKS as _DEGRADATIONS

_REGISTRY = {}

# What a model may be registered for: the zoo's degradations (zoo.data.tasks) and tasks its
# paper reports that the zoo has no degradation for.
TASKS = (*_DEGRADATIONS, *PAPER_ONLY_TASKS)
INPUTS = ("gray", "Y", "RGB")


class OverrideError(ValueError, TypeError):
    """A builder override the model does not take (a user error, so a ValueError; a TypeError as
    an unknown keyword argument is in Python)."""


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model besides its builder.

    Attributes:
        name: registry name.
        builder: the function that returns the ``keras.Model``.
        paper: short citation, e.g. ``"xUnit (Kligvasser et al., CVPR 2018)"``.
        tasks: the restoration tasks the model is meant for.
        input: colour convention of input and output: ``gray``, ``Y`` or ``RGB``.
        upsampling: ``"interpolated"`` (the input is the bicubic-upsampled
            image, output of the same size), ``"sub-pixel"`` (the input is the
            low-res image, output ``scale`` times larger) or ``None``.
        scale: the output/input size ratio of sub-pixel models (1 otherwise).
        paper_params: the parameter count as the paper prints it.
        convention: the counting rule under which that figure holds
            (see :func:`zoo.params.count_params`).
    """

    name: str
    builder: object
    paper: str
    tasks: tuple
    input: str
    upsampling: object = None
    scale: int = 1
    paper_params: str = ""
    convention: str = "paper"

    def accepted_overrides(self):
        params = inspect.signature(self.builder).parameters
        return tuple(p for p in params)


def register(name, *, paper, tasks, input, upsampling=None, scale=1,
             paper_params="", convention="paper", **defaults):
    """Decorator that adds a builder to the registry under ``name``.

    ``defaults`` are keyword arguments bound for this entry, so one builder can
    serve several names (``xdncnn`` and ``xdncnn_rgb``).
    """
    if input not in INPUTS:
        raise ValueError(f"input must be one of {INPUTS}, got {input!r}")
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown tasks {sorted(unknown)}; known: {TASKS}")

    def decorate(builder):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        entry = builder
        if defaults:
            entry = _bind(builder, name, defaults)
        _REGISTRY[name] = ModelInfo(name, entry, paper, tuple(tasks), input,
                                    upsampling, scale, paper_params, convention)
        return builder

    return decorate


def _bind(builder, name, defaults):
    """The builder with some keyword defaults changed (signature kept honest)."""
    signature = inspect.signature(builder)
    missing = set(defaults) - set(signature.parameters)
    if missing:
        raise TypeError(f"{builder.__name__} takes no {sorted(missing)}")

    def bound(**overrides):
        return builder(**{"name": name, **defaults, **overrides})

    params = [p.replace(default=defaults.get(p.name, name if p.name == "name" else p.default))
              for p in signature.parameters.values()]
    bound.__signature__ = signature.replace(parameters=params)
    bound.__name__ = builder.__name__
    bound.__doc__ = builder.__doc__
    return bound


def _models():
    # Filled by the @register decorators when ``zoo.models`` is imported; callers import the
    # lookups from there (``from zoo.models import build, info``).
    return _REGISTRY


def list_models(pattern=None):
    """Sorted registry names, optionally filtered by a glob ``pattern``."""
    names = sorted(_models())
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def info(name):
    """The :class:`ModelInfo` of ``name``; a clear error with close matches if unknown."""
    registry = _models()
    if name not in registry:
        close = difflib.get_close_matches(str(name), registry, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} "
                         f"Known models: {', '.join(sorted(registry))}.")
    return registry[name]


def build(name, /, weights=None, **overrides):
    """Builds the registered model ``name`` with keyword ``overrides``.

    ``weights``: a tag (``zoo list --pretrained``: the authors' ``official-*`` ones,
    fetched and converted on first use, or our shipped ones; the card's builder
    overrides are applied) or a ``.weights.h5`` file.

    >>> model = build("memnet", blocks=4, recursions=6)
    >>> model = build("xdncnn", weights="official-s25")
    """
    entry = info(name)
    accepted = entry.accepted_overrides()
    unknown = [k for k in overrides if k not in accepted]
    if unknown:
        raise OverrideError(f"Model {name!r} takes no override {', '.join(map(repr, unknown))}. "
                        f"It takes: {', '.join(accepted)}.")
    if weights is None:
        return entry.builder(**overrides)
    from zoo import pretrained

    return pretrained.build_with_weights(name, weights, entry.builder, overrides)


def describe(name, /, **overrides):
    """A dict describing ``name``: paper, task, input convention, scale, parameter counts.

    The counts are measured on the built model (with ``overrides``), in the three
    conventions of :func:`zoo.params.count_params`.
    """
    from zoo.params import count_params

    entry = info(name)
    model = build(name, **overrides)
    return {
        "name": name,
        "paper": entry.paper,
        "tasks": list(entry.tasks),
        "input": entry.input,
        "upsampling": entry.upsampling,
        "scale": entry.scale,
        "paper_params": entry.paper_params,
        "convention": entry.convention,
        "params": {c: count_params(model, c) for c in ("paper", "kernels", "keras")},
        "overrides": list(entry.accepted_overrides()),
    }
