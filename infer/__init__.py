"""Runtime inference: numpy, OpenCV and OpenVINO (or ONNX Runtime). Never imports torch.

The Python API is :class:`Segmenter` (docs/inference.md, "Python API"); ``python -m infer`` is a
thin command line over it.
"""
from infer.errors import CaseError, ModelError, RoutingError
from infer.pipeline import CaseResult
from infer.routing import Route, RoutingTable, load_routing
from infer.segmenter import Segmenter
from infer.strategies import STRATEGIES

__all__ = ["Segmenter", "CaseResult", "CaseError", "ModelError", "RoutingError", "Route", "RoutingTable",
           "load_routing", "STRATEGIES"]
