"""What a training job needs: the training loop and its checks before it starts, the
feature cache, the devices, the diagnostics logged per epoch and the cost of a run."""
