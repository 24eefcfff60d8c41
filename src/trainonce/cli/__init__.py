"""The ``trainonce`` command line: ``run`` (train + prune + slim + report), ``analyze``, ``export``.

Entry point: `trainonce.cli.main.main`.
"""
