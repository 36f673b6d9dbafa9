"""The entry points' workflows, one module per MLproject entry point (same name as its script),
the frame they run in (``runner``), and what several of them share (``models``, ``registry``)."""
