"""The latent cache: its format and contract (`format`), building it (`build`, `avgen cache` in `cli`),
and reading it for training (`latents`: dataset, bucketing sampler, Lightning data module).

Import the modules themselves: `av_model.cache.format` stays free of Lightning, so sampling can
read a cache's `LatentSpec` without loading the training side.
"""
