"""The stack layer: the typed, checked configuration of one stack, and the sections of it that
build each component's Args (`config.py`); the GPU memory arithmetic it checks with
(`capacity.py`)."""
