"""The paper-scale rehearsal: every target of a paper config built end to end on a CPU, before any
GPU-hour is spent, through the real rules, data layouts and architectures.

* `fixtures`: a small generated fixture for every dataset the config reads, in that dataset's real
  layout and format (`writers`: one writer per format, driven by the dataset's `format`, `files`
  and `splits`), served from a loopback HTTP server (`server`) or written as a local folder;
* `checkpoints`: every backbone's published file in its real layout (OpenAI's CLIP state dict,
  MoCo's `module.encoder_q.*`, torchvision's ResNet-50), random weights of a narrower model with the
  same keys;
* `overlay`: one config file laid over the paper config: the fixtures' URLs, paths and checksums,
  the checkpoints, and every run's steps, batch, sweep grids and evaluation sizes shrunk;
* `python -m robustft.rehearsal` (`make rehearse`): all of it, then `snakemake all` in its own
  directory, and a table of where the time went (bench/rehearsal.py).
"""
