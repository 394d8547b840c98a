"""``python -m app [--model M] [--host H] [--port P]``: serve the app (same as ``workbench app``)."""

from app.app import main

main()
