"""Generating clips from a trained generator: the generator file (`generator_file`: load a checkpoint
or an exported file), task inputs (`task_inputs`: images, spans, splicing), the pipeline from prompts
and media to mp4 clips with sound (`pipeline`), and `avgen sample` (`cli`).

Loads without Lightning: the samplers themselves are in `av_model.flow`.
"""
