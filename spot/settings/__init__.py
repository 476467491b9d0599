"""The typed settings of the config's sections, one module per experiment, without torch.

:mod:`.evaluation` (``evaluation:``, ``spot evaluate``), :mod:`.oracle` (``oracle:``, ``transfer:``),
:mod:`.throughput`, :mod:`.saliency`, :mod:`.pruning` and :mod:`.canvas` (``data.canvas:``, the Fashion-MNIST
benchmark) hold the dataclasses the commands build from a config (:func:`spot.config.settings_from_dict`) and their
``validate`` methods. The experiment modules that run them (``spot.experiments.evaluate``, ``spot.experiments.oracle``, …) import torch and
re-export these classes; here they stand alone, so that the workflow builds and validates every section while it
builds the DAG without importing torch (``spot.config.check_sections``; ``workflow/rules/common.smk``).

Imports nothing itself; its modules import only the standard library and spot's torch-free modules
(:mod:`spot.config`, :mod:`spot.core.placement`).
"""
