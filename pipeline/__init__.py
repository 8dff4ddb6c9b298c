"""rebound-mri: MRI lesion activity in multiple-sclerosis treatment-discontinuation cohorts.

Array-level science lives in the modules of this package; only :mod:`pipeline.io` and the
``*_files`` wrappers touch the file system. The Snakemake workflow under ``workflow/`` calls the
command-line entry points in :mod:`pipeline.cli` (``python -m pipeline <command>``).
"""

__version__ = "0.1.0"
