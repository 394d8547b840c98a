"""The workbench's Dash app: watch a looped model think, step by step.

``create_app(model)`` builds it (once per process: Dash binds page callbacks to the first app);
``python -m app`` or ``workbench app`` serves it. Pages live in ``app/pages/``, one module per view;
they call the app's server side (``app.state``) and the library (``workbench.plots``) and hold no model state.
``workbench app`` finds ``app.app:serve`` through the ``workbench.apps`` entry point group (pyproject.toml).
"""
