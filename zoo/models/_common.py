"""Small pieces every builder uses: the image input and a named 'same' conv."""

import keras


def image_input(channels, name="degraded"):
    """A ``(None, None, channels)`` input: any image size, odd sizes included."""
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ValueError(f"channels must be a positive integer (1 gray/Y, 3 RGB), got {channels!r}")
    return keras.Input((None, None, channels), name=name)


def conv(filters, kernel_size, name, use_bias=True, **kwargs):
    """A stride-1 'same' convolution."""
    return keras.layers.Conv2D(filters, kernel_size, padding="same", use_bias=use_bias,
                               name=name, **kwargs)
