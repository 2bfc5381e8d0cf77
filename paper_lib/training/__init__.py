"""Stage 3 — training the three networks.

* :mod:`~paper_lib.training.loop` – :func:`~paper_lib.training.loop.fit`, the one loop for
  regressors and the DAE (device, DDP, data thread, validation), and
  :func:`~paper_lib.training.loop.predict_scaled`, a model's raw output in scaled labels;
* :mod:`~paper_lib.training.config` – :class:`~paper_lib.training.config.TrainConfig`, what a
  run trains for (read by the loop, recorded in the checkpoints);
* :mod:`~paper_lib.training.checkpoints` – atomic checkpoints, exact resume,
  :func:`~paper_lib.training.checkpoints.load_model`;
* :mod:`~paper_lib.training.variants` – the paper's variants (network, covariance, DAE, †) and
  :func:`~paper_lib.training.variants.train_variant`.

Notebooks train through :func:`paper_lib.experiments.train_variants`, which builds each
variant's data and calls :func:`~paper_lib.training.variants.train_variant`.
"""
