"""Stage 4 — evaluation of the regressors: the paper's Tables 2–4 and Figures 3–4, and beyond.

* :mod:`~paper_lib.evaluation.metrics` – MAE, σ coverage (within kσ), MAE against SNR, and a
  post-hoc σ recalibration fitted on the validation set (not in the paper);
* :mod:`~paper_lib.evaluation.tables` – Tables 2–4 as Markdown and CSV, with the paper's
  published numbers in separate, labelled comparison blocks;
* :mod:`~paper_lib.evaluation.figures` – Figs 3–4 (residuals and σ against the true labels),
  MAE against SNR, the σ calibration plot.

Conventions
-----------
* Every array here is in **physical units** (:mod:`paper_lib.labels`): columns ``teff`` [K],
  ``logg`` [dex], ``mh`` ([M/H], the paper's Z) [dex], ``vsini`` [km/s]; ``true``,
  ``pred``/``mean`` and ``sigma`` have shape (N, 4). The networks' scaled outputs are turned
  into physical units by :func:`paper_lib.predict.predict`.
* Residuals are ``pred − true`` (positive: the model overestimates the label).
* "Within kσ" means ``|pred − true| < k σ`` (strict), as in the paper's Table 3.
* Published numbers of the paper live in :mod:`~paper_lib.evaluation.tables`
  (``PAPER_TABLE2``–``PAPER_TABLE4``). They are used **only** for clearly labelled comparison
  blocks of the tables; nothing here mixes them into our results.
"""
