"""Pipeline stages. Each reads its inputs from the run directory and writes its outputs back, so
any stage can be re-run or inspected on its own. The stage table (``table.py``) declares them:

    data -> pretrain (optional) -> teacher -> student_scratch -> student_kd -> export -> engines -> bench

``rundir.py`` keeps the reuse keys and manifests, ``runner.py`` runs the table in order, and
``validate.py`` checks a recipe against every table (stages, engines, KD losses, models).
"""

from edgekd.stages.validate import load_recipe, parse_recipe

__all__ = ["load_recipe", "parse_recipe"]
