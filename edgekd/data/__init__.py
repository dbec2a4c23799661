"""Video data: decoding, dataset splits, a decoded-frame cache and clip sampling.

Re-exported here so callers write ``from edgekd.data import read_ucf101, ClipDataset``.
(``edgekd.data.synth`` is imported explicitly by whoever needs synthetic data.)
"""

from edgekd.data.cache import CACHE_FORMAT_VERSION, FrameCache
from edgekd.data.clips import ClipDataset, ClipSpec, make_loader, normalize_clip
from edgekd.data.decode import VideoDecodeError, read_video
from edgekd.data.splits import (
    VIDEO_EXTENSIONS,
    DatasetSplit,
    SplitError,
    VideoItem,
    load_split,
    read_folder_tree,
    read_ucf101,
    save_split,
)

__all__ = [
    "CACHE_FORMAT_VERSION",
    "VIDEO_EXTENSIONS",
    "ClipDataset",
    "ClipSpec",
    "DatasetSplit",
    "FrameCache",
    "SplitError",
    "VideoDecodeError",
    "VideoItem",
    "load_split",
    "make_loader",
    "normalize_clip",
    "read_folder_tree",
    "read_ucf101",
    "read_video",
    "save_split",
]
