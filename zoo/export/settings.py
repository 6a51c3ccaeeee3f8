"""Export defaults shared by ``zoo.export`` and the command line (no heavy imports).
"""

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
CALIBRATED = ("int8", "int16x8")      # full-integer modes: activation ranges from calibration
IO_DTYPES = ("int8", "uint8")
CALIBRATION_PATCH = 64       # input side of the calibration patches of a resizable model
# The converter's calibration pass runs the float graph op by op, ~0.35 s a 64x64 patch for
# xDnCNN on 2 cores: 64 patches keep the default int8 export within a minute (128: 50 s alone).
CALIBRATION_SAMPLES = 64
CALIBRATION_MIN = 4          # fewest calibration inputs of a large fixed-size model
LATENCY_SIZES = (256,)       # more sizes (--latency-sizes 256 512) and --latency-every: options
LATENCY_THREADS = (1, 2)
LATENCY_RUNS = 3             # timed runs per setting, after one warm-up run (the median is kept)
SLOW_BUILTIN = 2             # a builtin setting this many times slower than XNNPACK is timed once
RESIZE_PROBE = ((37, 50), (64, 45))  # two odd input sizes a resizable model must run at
AGREES_DB = 30.0             # a resized run "works" if it agrees with Keras to this PSNR,
RESIZED_MARGIN_DB = 3.0      # or to within this of the file's own worst validation image
# The CPU runtime of a file without a card: XNNPACK, LiteRT's own default.  XNNPACK runs depthwise
# kernels of more than 25 taps ~50x slower than 5x5 ones (512x512x64 float32: 9x9 655 ms, 5x5 12 ms;
# LiteRT's builtin kernels: 99 ms), so every mode splits xUnit 9x9 depthwise convs into four pieces
# of at most 5x5 (XUNIT_SPLIT, exact in float), after which XNNPACK is the faster runtime.  In int8
# the pieces' int8 partial sums cost a trained xDnCNN 0.2 dB more than the whole 9x9 (0.44 vs
# 0.24 dB on Set12), but the whole 9x9 runs ~4x slower (builtin kernels; far slower on XNNPACK):
# xunit_split=0 exports that one.  Every export times both runtimes and its card names the faster,
# which LiteRT(path) then uses (benchmarks/results/speed.md).
DEFAULT_XNNPACK = True
GATE_CLIP = 3.0              # |d| bound of the xUnit gate in int8 graphs (see xunit_options)
XUNIT_SPLIT = {"float32": 5, "float16": 5, "dynamic": 5, "int8": 5, "int16x8": 5}
# int8 exports with a fixed input size run each xUnit depthwise conv as a grouped conv on 4x4
# pixel blocks instead (ExportXUnit(block=4), exact): XNNPACK runs it on its int8 GEMM kernels, in one
# accumulation with no rounded partial sums; one int8 xUnit at 512x512x64 takes about half the
# split's time (benchmarks/results/xunit_pieces.md).  A resizable graph computes the block shapes
# at run time, which XNNPACK does not delegate (the block conv alone: 102 ms), so resizable
# exports keep the split; float graphs too (there the split is faster).
XUNIT_BLOCK = 4
# quantization-aware fine-tuning (zoo.export.qat): Adam steps on batches of degraded patches
QAT_STEPS = 300
QAT_LEARNING_RATE = 1e-4
QAT_PATCH = 32
QAT_BATCH = 16
