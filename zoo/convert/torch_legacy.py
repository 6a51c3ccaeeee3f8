"""PyTorch state dicts saved in the legacy (pre-1.6) format, read without PyTorch.

The legacy format is five pickles in a row: a magic number, the protocol version, system info,
the state dict itself (tensors refer to storages by persistent id), and the list of storage keys;
then each storage's raw bytes (an int64 element count, then the elements, little-endian).

Unpickling runs code named in the file, so :class:`RestrictedUnpickler` resolves only the names
``torch.load(weights_only=True)`` allows for such a file: ``collections.OrderedDict``,
``torch._utils._rebuild_tensor(_v2)`` and the ``torch.*Storage`` types.  Any other global is
refused by name, before anything is called.
"""

import collections
import os
import pickle
import struct

import numpy as np

from zoo.convert.assign import ConversionError, Tensor

MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _Storage:
    def __init__(self, key, dtype, count):
        self.key, self.dtype, self.count, self.array = key, dtype, count, None


class _TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialise(self):
        flat = self.storage.array
        itemsize = flat.itemsize
        needed = self.offset + sum((s - 1) * st for s, st in zip(self.size, self.stride)) + 1
        if self.size and min(self.size) == 0:
            return np.zeros(self.size, flat.dtype)
        if needed > flat.size:
            raise ConversionError(f"a tensor of shape {self.size} reaches past its storage "
                                  f"({needed} > {flat.size} elements)")
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size, strides=[s * itemsize for s in self.stride])
        return np.array(view)


def _rebuild_tensor(storage, offset, size, stride, *_):
    if not isinstance(storage, _Storage):
        raise ConversionError("a tensor refers to something that is not a storage")
    return _TensorRef(storage, offset, size, stride)


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals of a plain state dict; refuses any other by name."""

    ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
               ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
               ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor}

    def __init__(self, file, path):
        super().__init__(file)
        self.path, self.storages = path, {}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        raise ConversionError(f"{self.path}: refusing to unpickle {module}.{name}: only tensors, "
                              "storages and OrderedDict may appear in a weights file")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and pid[1] in STORAGE_DTYPES):
            raise ConversionError(f"{self.path}: unexpected persistent id {str(pid)[:80]}")
        _, kind, key, _location, count = pid[:5]
        if key not in self.storages:
            self.storages[key] = _Storage(key, STORAGE_DTYPES[kind], int(count))
        return self.storages[key]


def read_state_dict(path):
    """``{name: numpy array}`` of a legacy PyTorch state dict, in the file's order."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        start = f.read(2)
        if start == b"PK":
            raise ConversionError(f"{path}: a PyTorch >= 1.6 zip file; only the legacy format is read")
        if start != b"\x80\x02":
            raise ConversionError(f"{path}: not a legacy PyTorch file (no protocol-2 pickle at the "
                                  f"start: {start + f.read(14)!r})")
        f.seek(0)
        try:
            magic = RestrictedUnpickler(f, path).load()
            if magic != MAGIC:
                raise ConversionError(f"{path}: not a legacy PyTorch file (magic number "
                                      f"{str(magic)[:30]})")
            RestrictedUnpickler(f, path).load()  # protocol version
            RestrictedUnpickler(f, path).load()  # system info
            unpickler = RestrictedUnpickler(f, path)
            state = unpickler.load()
            keys = RestrictedUnpickler(f, path).load()
        except ConversionError:
            raise
        except Exception as error:  # a truncated or damaged pickle raises many types
            raise ConversionError(f"{path}: not a readable legacy PyTorch file "
                                  f"({type(error).__name__}: {str(error)[:120]})") from None
        if not isinstance(state, dict):
            raise ConversionError(f"{path}: holds a {type(state).__name__}, not a state dict")
        for key in keys:
            storage = unpickler.storages.get(key)
            header = f.read(8)
            if storage is None or len(header) < 8:
                raise ConversionError(f"{path}: storage {key} is missing or truncated")
            (count,) = struct.unpack("<q", header)
            data = f.read(count * np.dtype(storage.dtype).itemsize)
            if count != storage.count or len(data) < count * np.dtype(storage.dtype).itemsize:
                raise ConversionError(f"{path}: storage {key} is truncated "
                                      f"({len(data)} bytes for {count} elements)")
            storage.array = np.frombuffer(data, dtype=storage.dtype)
    out = {}
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            raise ConversionError(f"{path}: entry {name!r} is not a tensor")
        if ref.storage.array is None:
            raise ConversionError(f"{path}: the storage of {name!r} is missing")
        out[name] = ref.materialise()
    return out


def state_dict_tensors(state):
    """A state dict as :class:`Tensor` roles: conv weight/bias, BN weight/bias/running stats.

    A module is a batch norm when it has a ``running_mean``; ``num_batches_tracked`` is skipped.
    """
    norms = {name.rsplit(".", 1)[0] for name in state if name.endswith(".running_mean")}
    roles = {"weight": ("gamma", "kernel"), "bias": ("beta", "bias"),
             "running_mean": ("mean", None), "running_var": ("var", None)}
    tensors = []
    for name, array in state.items():
        module, _, leaf = name.rpartition(".")
        if leaf == "num_batches_tracked":
            continue
        if leaf not in roles:
            raise ConversionError(f"state dict entry {name!r} is neither a weight, a bias nor a "
                                  "batch-norm statistic")
        role = roles[leaf][0 if module in norms else 1]
        if role is None:
            raise ConversionError(f"{name!r}: running statistics outside a batch norm")
        tensors.append(Tensor(name, array, role, "OIHW" if role == "kernel" else ""))
    return tensors
