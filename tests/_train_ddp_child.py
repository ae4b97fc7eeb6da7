"""torchrun entry point for the DDP test: registers the tiny test architecture (monkeypatch cannot
reach a child process), then runs the multi-GPU training CLI with the given flags. The test puts the
repository on PYTHONPATH for ``tests``."""
import sys

from tests._train_fixtures import register_tiny
from train import train_multi_gpus

register_tiny()
raise SystemExit(train_multi_gpus.main(sys.argv[1:]))
