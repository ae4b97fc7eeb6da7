"""Organiser-exact DSC/NSD scoring, per-case timing and pictures for challenge `.npz` cases.

Stands alone: numpy, scipy, surface-distance, matplotlib, tqdm. Never imports `infer`, `train` or torch.
"""
