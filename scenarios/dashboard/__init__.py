"""A live dashboard of a world: its services, their clock, fault rules and journals.

``caas-sim up`` serves it on the port base plus 190 (http://127.0.0.1:8190 by default);
``Dashboard(services).start()`` serves it for any world given by URL. It speaks only the
admin protocol (contracts/admin.yaml) and, for the vehicle page, the IoT simulator's
public API, so it works with a core written by someone else too (docs/simulators.md,
"The dashboard").
"""

from .app import DASHBOARD_OFFSET, DASHBOARD_PORT, Dashboard, create_app

__all__ = ["DASHBOARD_OFFSET", "DASHBOARD_PORT", "Dashboard", "create_app"]
