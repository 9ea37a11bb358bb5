"""The diffusion process, shared by training and sampling: the flow-matching noise path, time grid and
loss (`matching`), the ODE samplers with per-modality guidance and their tasks (`sampling`), and long
clips sampled window by window (`long_sampling`). Plain PyTorch: no Lightning, no files.
"""
