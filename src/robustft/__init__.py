"""robustft: fine-tuning methods for zero-shot and contrastively pretrained vision models.

Importing the package is cheap (no torch): the Snakefile imports `robustft.config` and
`robustft.methods` to validate the config before any job runs. Heavy modules import torch.
"""

__version__ = "0.1.0"
