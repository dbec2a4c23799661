"""Video data: decoding, dataset splits, a decoded-frame cache (its formats and size estimate) and clip sampling.

Re-exported here so callers write ``from edgekd.data import read_ucf101, ClipDataset``.
(``edgekd.data.synth`` is imported explicitly by whoever needs synthetic data.)
"""

from edgekd.data.augment import AugmentParams
from edgekd.data.cache import CACHE_FORMAT_VERSION, FrameCache, Frames
from edgekd.data.clips import (
    ClipDataset,
    ClipSpec,
    make_loader,
    normalize_clip,
    normalize_flow,
)
from edgekd.data.decode import VideoDecodeError, read_video
from edgekd.data.estimate import CacheEstimate, CacheSpaceError, estimate_cache
from edgekd.data.flow import FlowCache
from edgekd.data.formats import CACHE_FORMATS, CacheFormat, PackedFrames, get_format
from edgekd.data.fractions import apply_fraction
from edgekd.data.readers import read_dataset, read_hmdb51, read_ucf11, read_ucf50
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
    "CACHE_FORMATS",
    "CACHE_FORMAT_VERSION",
    "VIDEO_EXTENSIONS",
    "AugmentParams",
    "CacheEstimate",
    "CacheFormat",
    "CacheSpaceError",
    "ClipDataset",
    "ClipSpec",
    "DatasetSplit",
    "FlowCache",
    "FrameCache",
    "Frames",
    "PackedFrames",
    "SplitError",
    "VideoDecodeError",
    "VideoItem",
    "apply_fraction",
    "estimate_cache",
    "get_format",
    "load_split",
    "make_loader",
    "normalize_clip",
    "normalize_flow",
    "read_dataset",
    "read_folder_tree",
    "read_hmdb51",
    "read_ucf11",
    "read_ucf50",
    "read_ucf101",
    "read_video",
    "save_split",
]
