from unirec_lab.utils.rundir import register_resolvers

register_resolvers()  # hydra.run.dir (conf/hydra/default.yaml) resolves through it in every entry point
