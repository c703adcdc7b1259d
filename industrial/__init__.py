"""industrial: a TorchRec-based training system for transferable multi-modal sequential recommendation."""

__version__ = "0.1.0"
