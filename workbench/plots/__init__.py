"""Figure builders shared by the CLI, the app and the notebooks (plotly for HTML, matplotlib for PNG)."""
