"""Runtime inference: numpy, OpenCV and OpenVINO (or ONNX Runtime). Never imports torch."""
