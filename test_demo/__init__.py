"""Demo cases: synthetic challenge-format phantoms of every modality (see test_demo.generate)."""
