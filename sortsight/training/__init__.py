"""The training engine, one concept per module.

- :mod:`.run` — ``train_classifier(config)``: the story of a run, top to bottom (multi-label data
  goes to :mod:`sortsight.multilabel`; :func:`sortsight.train.train` chooses);
- :mod:`.plan` — what a run will do (candidates, fine-tune or not, views, estimate), shared with
  :func:`sortsight.estimate.estimate_training`;
- :mod:`.views` — decoding images once into the eval view (:mod:`sortsight.geometry`) and
  augmented views;
- :mod:`.frozen` — the frozen-feature pass on the fastest engine measured at run time;
- :mod:`.split` — a network cut into a frozen trunk and a trainable tail;
- :mod:`.head` — logistic-regression head, refit on train + validation, WiSE-FT mixing;
- :mod:`.loop` — the fine-tuning epoch loop; :mod:`.schedule` — learning rates;
- :mod:`.precision` — threads and fp32/bf16 by measurement; :mod:`.distributed` — ``torchrun``;
- :mod:`.checkpoint` — pickle-free checkpoints; :mod:`.run_dir` — the run folder and its files;
- :mod:`.speeds` — the speeds measured on this machine, remembered for the next estimate.

Importing the package imports none of them (nor torch): an estimate answered from remembered
speeds never pays for torch.
"""
