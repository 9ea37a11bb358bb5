"""avtrain: what every trainer of the project shares (codec, autoencoder, generator, distillation).

One optimizer and learning-rate schedule config (`avtrain.optim`) and one LightningCLI factory
(`avtrain.cli`): each component keeps the same files (config, model, lit, cli) and builds its
command from these. It sits just above `avio`, below every package that trains something.
"""
