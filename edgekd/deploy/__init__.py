"""Deploy bundles: ``edgekd pack RUN_DIR --target cpu|jetson`` (see :mod:`edgekd.deploy.pack`)."""

from edgekd.deploy.pack import TARGETS, PackError, PackResult, pack_bundle

__all__ = ["TARGETS", "PackError", "PackResult", "pack_bundle"]
