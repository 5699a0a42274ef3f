from .config import PanoSAMicConfig
from .panosamic import PanoSAMic

__all__ = ["PanoSAMic", "PanoSAMicConfig"]
