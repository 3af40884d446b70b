"""Single-scenario sequential recommendation (SASRec) on the S3-Rec Amazon sequences.

- :mod:`unirec_lab.seqrec.data`: user sequences, next-item targets and the fixed 1-vs-99 evaluation candidates,
  tensorised once from the raw S3-Rec files;
- :mod:`unirec_lab.seqrec.model`: SASRec = shared item embedding table + the framework's
  :class:`~unirec_lab.models.backbones.encoders.CausalSelfAttention`, scored by dot product;
- :mod:`unirec_lab.seqrec.train`: Hydra entry point (``python -m unirec_lab.seqrec.train dataset=Beauty seed=1``),
  early stopping on validation, test of the best epoch, ``result.json``;
- :mod:`unirec_lab.seqrec.table`: published vs. ours table over seeds (experiments/reproduce_s3rec_sasrec).
"""
