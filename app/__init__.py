"""The workbench's Dash app: watch a looped model think, step by step.

``create_app(model)`` builds it (once per process: Dash binds page callbacks to the first app);
``python -m app`` or ``workbench app`` serves it. Pages live in ``app/pages/``, one module per view;
they call the library (``workbench.app_state``, ``workbench.plots``) and hold no model state.
"""
