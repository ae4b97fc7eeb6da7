"""Entry point: ``python -m infer`` (see :mod:`infer.cli`)."""
import sys

# `import openvino` also imports its model converter (openvino.tools.ovc, about 0.14 s of the
# 1 s start-up budget) if it can; a process that only runs compiled models never uses it.
sys.modules.setdefault("openvino.tools.ovc", None)  # type: ignore[arg-type]

from infer.cli import main  # noqa: E402

sys.exit(main())
