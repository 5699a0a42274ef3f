"""PanoSAMic: semantic segmentation of 360-degree panoramas on a frozen SAM encoder.

>>> from panosamic.model import PanoSAMic
>>> model = PanoSAMic.from_pretrained_panosamic("dfki-av/PanoSAMic", subfolder="stanford2d3ds-vith-rgbdn-fold1")
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("panosamic")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
