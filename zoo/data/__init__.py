"""Image data: files, colour conventions, MATLAB-compatible resize, degradations, a demo set."""

from .degrade import (
    add_noise, bicubic_degrade, image_seed, jpeg_degrade,
    tf_add_noise, tf_bicubic_degrade, tf_jpeg_degrade, tf_pick_level, tf_uniform_level,
)
from .demo import cache_dir, demo_folder, demo_images
from .io import (
    IMAGE_EXTENSIONS, ImageReadError, convert_mode, list_images, quantize, read_folder, read_image,
    rgb_to_gray, rgb_to_y, rgb_to_ycbcr, round_cast, tf_rgb_to_y, to_float, write_image,
    ycbcr_to_rgb,
)
from .resize import imresize, imresize_np, modcrop
from .tasks import TASK_MODE, TASKS, Task, check_levels, degrade, get_task, parse_level

__all__ = [
    "TASK_MODE", "TASKS", "Task", "check_levels", "get_task", "parse_level", "degrade",
    "add_noise", "bicubic_degrade", "image_seed", "jpeg_degrade",
    "tf_add_noise", "tf_bicubic_degrade", "tf_jpeg_degrade", "tf_pick_level", "tf_uniform_level",
    "cache_dir", "demo_folder", "demo_images",
    "IMAGE_EXTENSIONS", "ImageReadError", "convert_mode", "list_images", "quantize", "read_folder",
    "read_image", "rgb_to_gray", "rgb_to_y", "rgb_to_ycbcr", "round_cast", "tf_rgb_to_y",
    "to_float", "write_image", "ycbcr_to_rgb",
    "imresize", "imresize_np", "modcrop",
]
