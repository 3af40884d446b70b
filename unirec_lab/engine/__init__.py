"""The run engine: the recipe every entry point uses (build -> fit -> select -> evaluate -> record), the one
LightningModule, its optimizer, checkpoints (trusted resume, atomic writes), callbacks and failure handling."""
