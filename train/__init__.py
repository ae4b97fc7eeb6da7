"""PyTorch side: model definitions, checkpoint loading, fine-tuning and export."""
