"""The Hydra configs, shipped inside the package as ``unirec_lab.conf`` (see pyproject.toml) so that every
console script finds them as ``pkg://unirec_lab.conf`` whatever the working directory and install kind."""
