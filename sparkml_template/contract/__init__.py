"""What your modules (``sparkml_template.yours``) and the template's machinery agree on.

The names of tasks and of the columns a pipeline writes, the description of a validated dataset
that ``build_pipeline`` receives, the shape of an estimator table entry, what is read off a
fitted pipeline, and the figure every chart is drawn on. Your modules import from here and from
nothing else in the package; the machinery imports your modules only at the hooks listed in
``sparkml_template/yours/__init__.py``. Both directions are checked by the import contracts in
``pyproject.toml``.
"""
