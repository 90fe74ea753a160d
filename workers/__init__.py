"""Process entry points: settings, the worker, the ``acci`` CLI, the dev-server launcher,
metrics and health. The one place that wires pools and clients into activities."""
