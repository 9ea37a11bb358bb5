"""Training the generator with Lightning: the LightningModule (`lit`: `AVDiffusion`), `avgen fit` and
`avgen validate` (`cli`), the callbacks (`callbacks`: EMA, throughput, NaN guard, sample clips),
parallelism applied from outside the model (`parallel`), fine-tuning (`finetune`), and the
conditioning diagnostics (`diagnostics`; `avgen diagnose` in `diagnose`).

The only part of the generator that needs Lightning, with `av_model.cache.latents` (its data).
"""
