"""NLRN (Liu et al., NeurIPS 2018): a recurrent network with a non-local module (SPEC §3)."""

import keras

from zoo.layers import NonLocal, batch_norm
from zoo.models._common import conv, image_input
from zoo.registry import register


@register("nlrn", paper="NLRN (Liu et al., NeurIPS 2018)", tasks=("denoise", "sr"),
          input="Y", upsampling="interpolated", paper_params="330K", convention="kernels")
def nlrn(channels=1, states=12, filters=128, embed_filters=64, neighbourhood=35,
         propagation=True, name="nlrn"):
    """NLRN with ``states`` recurrent states sharing their weights (§4, Fig. 3).

    f = conv3x3(BN(x)); then for t = 1..T:
        s_t = conv(ReLU(BN(conv(BN(NL(ReLU(BN(s_(t-1)))))))) + f,   s_0 = f
    (convs and the non-local module NL shared across states, BNs per state);
    output = conv3x3(ReLU(BN(s_T))) + x.

    ``neighbourhood`` is q of the q x q window (odd), or None for attention
    over the whole input, as the released code does on its 43x43 training
    patches.  The default q = 35 is our choice for whole images; SPEC leaves
    it open.  ``propagation`` passes the correlation (pre-softmax logits) from
    state to state as a running sum; the authors also released models without
    it.  329,984 conv-kernel parameters for any T ("330K").
    """
    x = image_input(channels)
    h = batch_norm(name="input_bn")(x)
    f = conv(filters, 3, "feature_conv")(h)
    non_local = NonLocal(embed_filters, neighbourhood, name="non_local")
    conv1 = conv(filters, 3, "state_conv1")
    conv2 = conv(filters, 3, "state_conv2")
    state, correlation = f, None
    for t in range(1, states + 1):
        h = batch_norm(name=f"state{t}_bn1")(state)
        h = keras.layers.ReLU(name=f"state{t}_relu1")(h)
        h, logits = non_local(h, correlation=correlation)
        correlation = logits if propagation else None
        h = conv1(batch_norm(name=f"state{t}_bn2")(h))
        h = keras.layers.ReLU(name=f"state{t}_relu2")(batch_norm(name=f"state{t}_bn3")(h))
        state = keras.layers.Add(name=f"state{t}")([conv2(h), f])
    h = keras.layers.ReLU(name="output_relu")(batch_norm(name="output_bn")(state))
    out = keras.layers.Add(name="restored")([x, conv(channels, 3, "output_conv")(h)])
    return keras.Model(x, out, name=name)
