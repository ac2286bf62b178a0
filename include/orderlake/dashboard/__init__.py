"""The read-only dashboard: the two figures live from the serving view, and the platform's health.

``api`` builds the JSON answers (no HTTP), ``server`` serves them with the page under
``static/`` (vanilla JS and SVG, nothing fetched from the internet). Start it with
``python -m orderlake.dashboard`` or `orderlake dashboard`; `orderlake up` supervises it through
orderlake.stack.dashboard.
"""
