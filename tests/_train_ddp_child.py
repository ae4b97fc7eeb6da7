"""torchrun entry point for the DDP test: registers the tiny test architecture (monkeypatch cannot
reach a child process), then runs the multi-GPU training CLI with the given flags."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests._train_fixtures import register_tiny  # noqa: E402
from train import train_multi_gpus  # noqa: E402

register_tiny()
raise SystemExit(train_multi_gpus.main(sys.argv[1:]))
