"""`python -m orderlake.dashboard`: serve the dashboard in the foreground (Settings from
ORDERLAKE_* variables; the port is ORDERLAKE_DASHBOARD_PORT, default 8050)."""

from __future__ import annotations

import sys

from orderlake.dashboard.server import main

if __name__ == "__main__":
    sys.exit(main())
